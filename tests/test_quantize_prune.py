"""``bnc quantize --prune F`` (structured L1 pruning, iterative with fine-tuning) and
``--budget BYTES`` (weight bits per layer by sensitivity): the removed channels are removed by
the compiler, the chosen bits fit the budget as the compiler counts bytes, every result is bit
exact, and the refusals are one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bnc
from bnc.cli import main
from bnc.errors import BncError
from bnc.ir.analysis import layer_table
from bnc.ir.passes.dead import removed_channels
from bnc.ladder import climb
from bnc.quantization import prune as P
from bnc.quantization.capture import float_graph

sys.path.insert(0, str(Path(__file__).parent))
from test_quantize import MODELS, SHAPE, _images, _randomize_bn, chain  # noqa: E402


def weight_bytes(path: Path) -> int:
    return sum(r.weight_bytes for r in layer_table(bnc.compile(path, target="c").lowered))


def test_schedule_and_fraction() -> None:
    assert P.schedule(0.5, False) == [0.5]
    assert [round(f, 6) for f in P.schedule(0.5, True)] == [0.2, 0.4, 0.5]
    assert [round(f, 6) for f in P.schedule(0.6, True)] == [0.2, 0.4, 0.6]
    assert P.schedule(0.1, True) == [0.1]
    for bad in (0, 1, 1.5, -0.2, float("nan"), True):
        with pytest.raises(BncError, match="--prune must be a fraction"):
            P.check_fraction(bad)


def test_prunable_layers_are_the_ones_whose_channels_can_go() -> None:
    """A chain: every layer with weights but the output one, each with its BatchNorm. A
    ResNet: the convs whose outputs reach a residual add, and the head, are not prunable."""
    g = float_graph(chain(), SHAPE, "chain")
    groups = P.prunable(g)
    weighted = [n for n, m in g.layers.items() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert list(groups) == weighted[:-1]
    assert all(len(v) == 1 and isinstance(g.layers[v[0]], nn.BatchNorm2d | nn.BatchNorm1d)
               for v in groups.values())  # fmt: skip
    r = float_graph(MODELS["resnet"](), SHAPE, "resnet")
    names = set(P.prunable(r))
    assert any("conv1" in n for n in names)
    assert not any("conv2" in n or "down" in n or "head" in n or "stem" in n for n in names)
    # a BatchNorm1d over flattened pixels: its features are not the conv's channels
    flat = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.BatchNorm1d(400), nn.ReLU(),
                         nn.Linear(400, 3)).eval()  # fmt: skip
    assert P.prunable(float_graph(flat, SHAPE, "flat")) == {}


def test_pruned_channels_are_removed_by_the_compiler(tmp_path: Path) -> None:
    """Half of each prunable layer's channels pruned (no fine-tune): the removed channels
    have the smallest L1 norms and quantize to zero, the dead-channel pass removes every one
    of them, the weight bytes fall below a third, and the code equals the interpreter."""
    model = chain(width=8, seed=21)
    calib = torch.from_numpy(_images(64, 22))
    full = bnc.quantize(model, calib, weights=2, activations=4, output=tmp_path / "full.pt")
    q = bnc.quantize(model, calib, weights=2, activations=4, prune=0.5,
                     output=tmp_path / "half.pt")  # fmt: skip
    pruned = [r for r in q.layers if r.kind == "pruned"]
    fg = float_graph(model, SHAPE, "chain")
    assert len(pruned) == 4
    for r in pruned:
        layer = q.model.layers[r.name]
        o = layer.weight.shape[0]
        assert r.detail == f"{o // 2} of {o} channels pruned (L1)"
        zero = (layer.quantizer(layer.weight).reshape(o, -1) == 0).all(dim=1)
        assert int(zero.sum()) >= o // 2
        norms = fg.layers[r.name].weight.detach().reshape(o, -1).abs().sum(dim=1)
        assert float(norms[zero].max()) <= float(norms[~zero].min())
    compiled = bnc.compile(tmp_path / "half.pt", target="c")
    info = removed_channels(compiled.lowered)
    assert info is not None and info.removed >= sum(
        q.model.layers[r.name].weight.shape[0] // 2 for r in pruned)  # fmt: skip
    assert weight_bytes(tmp_path / "half.pt") < weight_bytes(tmp_path / "full.pt") / 3
    report = climb(q.model, _images(40, 23), ("c",), compiled)
    assert report.bit_exact, str(report)
    assert full.layers[0].kind == "input"


def test_iterative_pruning_keeps_removed_channels_at_zero(tmp_path: Path) -> None:
    """With --finetune the channels go 20 % at a time, each step trained; after training the
    removed channels are still exactly zero (latent weights, codebook rows, BatchNorm) and the
    model compiles bit-exactly."""
    model = chain(width=10, seed=31)
    x = _images(160, 32)
    with torch.no_grad():
        labels = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", images=x, labels=labels)
    said: list[str] = []
    q = bnc.quantize(model, torch.from_numpy(_images(64, 33)), weights=2, activations=2,
                     prune=0.5, finetune=tmp_path / "d.npz", epochs=1, lr=3e-3,
                     output=tmp_path / "q.pt", say=said.append)  # fmt: skip
    assert sum("pruned" in s and "epoch 1/1" in s for s in said) == 3, said
    for r in (r for r in q.layers if r.kind == "pruned"):
        layer = q.model.layers[r.name]
        o = layer.weight.shape[0]
        gone = (layer.weight.detach().reshape(o, -1) == 0).all(dim=1)
        assert int(gone.sum()) == int(0.5 * o + 1e-9)
        assert (layer.quantizer.levels.detach()[gone] == 0).all()
    report = climb(q.model, _images(32, 34), ("c",), bnc.compile(tmp_path / "q.pt"))
    assert report.bit_exact, str(report)


def test_budget_fits_as_the_compiler_counts(tmp_path: Path) -> None:
    """A budget between the 1-bit and the 4-bit model: the chosen bits differ between layers,
    the compiled weights take exactly the bytes the allocation counted and fit the budget, and
    the code equals the interpreter."""
    model = chain(width=8, seed=41)
    calib = torch.from_numpy(_images(96, 42))
    said: list[str] = []
    lo = bnc.quantize(model, calib, weights=1, activations=8, output=tmp_path / "w1.pt")
    hi = bnc.quantize(model, calib, weights=4, activations=8, output=tmp_path / "w4.pt")
    small, big = weight_bytes(tmp_path / "w1.pt"), weight_bytes(tmp_path / "w4.pt")
    budget = (small + big) // 3
    q = bnc.quantize(model, calib, weights=4, activations=8, budget=budget,
                     output=tmp_path / "mix.pt", say=said.append)  # fmt: skip
    chosen = [r.detail.split(",")[0] for r in q.layers if r.kind == "weights"]
    assert len(set(chosen)) > 1, chosen
    line = next(s for s in said if s.startswith(f"--budget {budget:,}:"))
    counted = int(line.split(": ")[1].split(" bytes")[0].replace(",", ""))
    assert weight_bytes(tmp_path / "mix.pt") == counted <= budget
    assert small < counted and len(lo.layers) == len(hi.layers) == len(q.layers)
    x = torch.from_numpy(_images(64, 43))
    report = climb(q.model, x.numpy(), ("c",), bnc.compile(tmp_path / "mix.pt"))
    assert report.bit_exact, str(report)


BAD = [
    ("prune 1", ["--prune", "1"], "--prune must be a fraction"),
    ("prune 0", ["--prune", "0"], "--prune must be a fraction"),
    ("budget 0", ["--budget", "0"], "--budget must be a positive number"),
    ("budget small", ["--budget", "100"], "--budget 100 bytes is below the smallest model: "),
    ("budget codebook", ["--budget", "9000", "--codebook", "4"], "--codebook and --method"),
    ("nothing to prune", ["--prune", "0.5", "MODEL"], "has no layer whose channels can be"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "args", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_prune_and_budget_are_one_line(
    what: str, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model: nn.Module = chain()
    if "MODEL" in args:
        args = [a for a in args if a != "MODEL"]
        model = _randomize_bn(nn.Sequential(nn.Flatten(), nn.Linear(144, 4)), 0)
    torch.save(model, tmp_path / "f.pt")
    np.save(tmp_path / "x.npy", _images(8, 44))
    cmd = ["quantize", str(tmp_path / "f.pt"), "--calibration", str(tmp_path / "x.npy"),
           "--weights", "2", "-o", str(tmp_path / "q.pt"), *args]  # fmt: skip
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("bnc: error:")]
    assert len(errors) == 1 and errors[0] == err[-1] and message in err[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pt", "x.npy"]


def test_budget_takes_units() -> None:
    from argparse import ArgumentTypeError

    from bnc.cli import _bytes

    assert [_bytes(t) for t in ("350000", "350k", "1.5M", "512KiB", "2MiB", "1,000")] == [
        350_000, 350_000, 1_500_000, 524_288, 2_097_152, 1000]  # fmt: skip
    for bad in ("abc", "1.5", "3x", "k", ""):
        with pytest.raises(ArgumentTypeError):
            _bytes(bad)


def test_hessian_importance_is_the_inputs_mean_square(tmp_path: Path) -> None:
    """--importance hessian: each weight's importance is the mean square of the input it
    multiplies (for the first conv, of the image pixels under its taps, zero padding
    included); the quantized model (here also pruned and under a budget) is bit-exact."""
    from bnc.quantization.model import hessian_diagonals

    model = chain(width=6, seed=51)
    x = torch.from_numpy(_images(40, 52))
    fg = float_graph(model, SHAPE, "chain")
    h = hessian_diagonals(fg, x)
    first = next(n for n, m in fg.layers.items() if isinstance(m, nn.Conv2d))
    padded = torch.nn.functional.pad(x.double(), (1, 1, 1, 1))
    want = torch.stack([(padded[:, 0, ky : ky + 12, kx : kx + 12] ** 2).mean()
                        for ky in range(3) for kx in range(3)]).reshape(3, 3)  # fmt: skip
    assert h[first].shape == fg.layers[first].weight.shape
    assert torch.allclose(h[first][0, 0].double(), want, rtol=1e-5)
    assert torch.equal(h[first][0], h[first][-1])
    q = bnc.quantize(model, x, weights=3, activations=4, importance="hessian", prune=0.3,
                     budget=2000, output=tmp_path / "q.pt")  # fmt: skip
    report = climb(q.model, _images(24, 53), ("c",), bnc.compile(tmp_path / "q.pt"))
    assert report.bit_exact, str(report)
