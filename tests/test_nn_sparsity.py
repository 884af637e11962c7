"""The sparse-training recipe: SparsitySchedule, the regularizer and the example trainer."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import bnc
import bnc.nn as bn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import train_fashion  # noqa: E402


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        bn.BinaryLinear(16, 64),
        nn.BatchNorm1d(64),
        bn.Sign(),
        bn.BinaryLinear(64, 64),
        nn.BatchNorm1d(64),
        bn.Sign(),
        bn.BinaryLinear(64, 4),
        nn.BatchNorm1d(4),
    )


def test_schedule_shape() -> None:
    s = bn.SparsitySchedule(_net(), target=0.05, total_steps=1000, start=0.5, begin=0.1, end=0.6)
    shares = [s.share_at(i) for i in range(1001)]
    assert shares[0] == shares[100] == 0.5
    assert all(a >= b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[600] == shares[1000] == 0.05
    assert 0.05 < shares[350] < 0.5


@settings(max_examples=40, deadline=None)
@given(
    share=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**16),
    per_layer=st.booleans(),
)
def test_projection_keeps_order_and_budget(share: float, seed: int, per_layer: bool) -> None:
    model = _net(seed)
    layers = bn.binary_layers(model)
    with torch.no_grad():
        for m in layers:
            m.weight.uniform_(-1.0, 1.0)
    before = [m.weight.detach().clone() for m in layers]
    s = bn.SparsitySchedule(model, 0.01, 10, exclude=[layers[-1]], per_layer=per_layer)
    s.project(share)
    counted = layers[:-1]
    groups = [[m] for m in counted] if per_layer else [counted]
    for group in groups:
        n = sum(m.weight.numel() for m in group)
        ones = sum(int((m.weight > 0).sum()) for m in group)
        was = sum(int((w > 0).sum()) for w, m in zip(before, layers, strict=False) if m in group)
        assert ones <= max(int(share * n), 0) or ones == was <= int(share * n)
        if was > int(share * n):
            assert ones == int(share * n)  # continuous weights: no ties at the threshold
    for w0, m in zip(before, layers, strict=True):
        w = m.weight.detach()
        assert float(w.abs().max()) <= 1.5
        if m is layers[-1]:
            assert torch.equal(w, w0)  # excluded: untouched
        else:  # a shift keeps the order, so b keeps the largest latent weights
            kept = w > 0
            if kept.any() and (~kept).any():
                assert float(w0[kept].min()) > float(w0[~kept].max())


def test_schedule_trains_to_target_sparsity() -> None:
    """On a separable task the scheduled network ends at 95 % alpha and still learns."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2048, 16, generator=g)
    proj = torch.randn(16, 4, generator=g)
    y = (x @ proj).argmax(1)
    model = _net()
    layers = bn.binary_layers(model)
    steps = 400
    s = bn.SparsitySchedule(model, 0.05, steps, exclude=[layers[0], layers[-1]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bn.clamp_latent_(model)
        s.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert float((layers[1].weight > 0).float().mean()) <= 0.05
    assert 1 - bn.beta_share(model, exclude=[layers[0], layers[-1]]) >= 0.95
    assert acc > 0.6, acc  # chance is 0.25


def test_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target"):
        bn.SparsitySchedule(_net(), 1.5, 10)
    with pytest.raises(ValueError, match="begin and end"):
        bn.SparsitySchedule(_net(), 0.05, 10, begin=0.7, end=0.6)
    with pytest.raises(ValueError, match="total_steps"):
        bn.SparsitySchedule(_net(), 0.05, 0)
    with pytest.raises(ValueError, match="no binary layers"):
        bn.SparsitySchedule(nn.Sequential(nn.Linear(2, 2)), 0.05, 10)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


def test_train_fashion_writes_a_model_bnc_compiles(tmp_path: Path) -> None:
    """The trainer on a small stand-in dataset: the model it writes compiles, runs equal to
    PyTorch, and is at the sparsity asked for."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    sets = {"train": 256, "t10k": 64}
    for name, n in sets.items():
        _write_idx(data / f"{name}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{name}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    out = tmp_path / "m.pt"
    train_fashion.main(
        ["--ec", "0.05", "--epochs", "2", "--batch", "32", "--end", "0.5", "--data-dir",
         str(data), "--out", str(out), "--threads", "1"]
    )  # fmt: skip
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["alpha_share"] >= 0.95  # over all binary weights, the free ends included
    assert len(info["history"]) == 2
    model = torch.load(out, weights_only=False).eval()
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = bnc.compile(out, target="c").run(x)
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4)

    # distilled from the first model, at another EC, with the share over all layers counted
    student = tmp_path / "s.pt"
    train_fashion.main(
        ["--ec", "0.02", "--epochs", "1", "--batch", "64", "--end", "0.5", "--data-dir",
         str(data), "--out", str(student), "--threads", "1", "--teacher", str(out)]
    )  # fmt: skip
    info = json.loads(student.with_suffix(".json").read_text())
    assert info["alpha_share"] >= 0.98
    assert "--teacher" in info["command"]


def test_train_fashion_missing_data_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_fashion.py"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataset-fashion-mnist" in lines[0]
    assert not list(tmp_path.iterdir())


def test_count_excluded_bounds_the_share_over_all_layers() -> None:
    model = _net(3)
    layers = bn.binary_layers(model)
    with torch.no_grad():
        for m in layers:
            m.weight.uniform_(-1.0, 1.0)
    last = layers[-1].weight.detach().clone()
    s = bn.SparsitySchedule(model, 0.05, 10, exclude=[layers[-1]], count_excluded=True)
    s.project(0.05)
    assert bn.beta_share(model) <= 0.05
    assert torch.equal(layers[-1].weight.detach(), last)
    assert float((last > 0).float().mean()) > 0.3  # the free layer stayed dense
