"""The verification ladder end to end: random bnc.nn models → PyTorch, interpreter, C."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bnc
from bnc.ladder import climb

sys.path.insert(0, str(Path(__file__).parent))
from modelgen import random_batch, random_model, random_multibit_model  # noqa: E402

SEEDS = range(16)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_is_bit_exact_in_c(seed: int) -> None:
    model, shape = random_model(1000 + seed)
    x = random_batch(shape, 64, seed)
    report = climb(model, x, targets=("c",))
    assert report.targets_equal == {"c": True}, str(report)
    for name, rate in report.bit_agreement.items():
        assert rate >= 0.99, f"{name}: {report}"


def test_pytorch_argmax_agreement_over_all_random_models() -> None:
    """DESIGN §2.2: the interpreter agrees with PyTorch on >= 99.9 % of inputs."""
    total = agree = 0
    for seed in SEEDS:
        model, shape = random_model(2000 + seed)
        compiled = bnc.compile(model, shape)
        x = random_batch(shape, 256, seed)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy().reshape(len(x), -1)
        from bnc.api import dequantize_flat, output_op
        from bnc.ir.interpreter import run

        ours = dequantize_flat(
            run(compiled.lowered, x).reshape(len(x), -1), output_op(compiled.lowered)
        )
        total += len(x)
        agree += int((ref.argmax(1) == ours.argmax(1)).sum())
    assert agree / total >= 0.999, f"{agree}/{total}"


def test_api_run_save_report(tmp_path: Path) -> None:
    model, shape = random_model(7)
    x = random_batch(shape, 8, 7)
    compiled = bnc.compile(model, torch.zeros(1, *shape), target="c")
    y = compiled.run(x)
    assert y.dtype == np.float32 and y.shape[0] == 8
    folder = compiled.save(tmp_path / "out")
    for name in ("model.h", "model.c", "main.c", "Makefile", "CMakeLists.txt", "bnc.json"):
        assert (folder / name).is_file(), name
    text = compiled.report()
    for row in compiled.layers():  # every layer of the table, with its MACs
        assert row.name in text
        if row.macs:
            assert f"{row.macs:,}" in text
    again = bnc.compile(model, torch.zeros(1, *shape)).save(tmp_path / "out2")
    for f in sorted(p.name for p in folder.iterdir() if p.is_file()):
        assert (folder / f).read_bytes() == (again / f).read_bytes(), f


def _residual_model(seed: int) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """A bnc.nn graph model: identity and two-branch residual blocks, concat with fan-out,
    global average pool, as a user would build it (random weights and statistics)."""
    from torch import nn

    import bnc.nn as bn

    torch.manual_seed(seed)
    c = 4 + seed % 5

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        body = nn.Sequential(bn.BinaryConv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout))
        short = None
        if stride != 1 or cin != cout:
            short = nn.Sequential(bn.BinaryConv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))
        return nn.Sequential(bn.Residual(body, short), bn.Sign())

    side = nn.Sequential(bn.BinaryConv2d(2 * c, 3, 3, 1, 1), nn.BatchNorm2d(3), bn.Sign())
    model = nn.Sequential(
        bn.InputQuantizer(input_shape=(2, 10, 10)),
        bn.BinaryConv2d(2, c, 3, 1, 1), nn.BatchNorm2d(c), bn.Sign(),
        block(c, c, 1), block(c, 2 * c, 2), bn.Concat(nn.Identity(), side),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), bn.BinaryLinear(2 * c + 3, 6), nn.BatchNorm1d(6),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(rng.normal(size=n)))
                m.bias.copy_(torch.from_numpy(rng.normal(scale=0.5, size=n)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(scale=2.0, size=n)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 3.0, size=n)))
    return model.eval(), (2, 10, 10)


@pytest.mark.parametrize("seed", range(4))
def test_residual_models_are_bit_exact_on_c_and_cortex_m(seed: int) -> None:
    model, shape = _residual_model(seed)
    x = random_batch(shape, 128 if seed else 32, seed)
    report = climb(model, x, targets=("c", "cortex-m4") if seed == 0 else ("c",))
    assert report.bit_exact, str(report)
    assert report.argmax_agreement >= 0.99, str(report)
    for name, rate in report.bit_agreement.items():
        assert rate >= 0.99, f"{name}: {report}"


def _argmax_agreement(models) -> tuple[int, int]:
    """(agreeing, total) arg-maxes of PyTorch and the interpreter over ``(model, shape)``s,
    256 random inputs each."""
    from bnc.api import dequantize_flat, output_op
    from bnc.ir.interpreter import run

    total = agree = 0
    for seed, (model, shape) in enumerate(models):
        compiled = bnc.compile(model, shape)
        x = random_batch(shape, 256, seed)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy().reshape(len(x), -1)
        acc = run(compiled.lowered, x).reshape(len(x), -1)
        ours = dequantize_flat(acc, output_op(compiled.lowered))
        total += len(x)
        agree += int((ref.argmax(1) == ours.argmax(1)).sum())
    return agree, total


def test_pytorch_argmax_agreement_over_residual_models() -> None:
    """DESIGN §2.2 on graph models: >= 99.9 % over 12 random residual models x 256 inputs."""
    agree, total = _argmax_agreement(_residual_model(100 + seed) for seed in range(12))
    assert agree / total >= 0.999, f"{agree}/{total}"


@pytest.mark.parametrize("seed", range(6))
def test_multibit_models_are_bit_exact(seed: int) -> None:
    """Every weight quantizer, k-bit activations and 8-bit residual streams of bnc.nn models:
    the ladder from PyTorch through the interpreter to C (and Cortex-M for one seed)."""
    model, shape = random_multibit_model(300 + seed)
    x = random_batch(shape, 64, seed)
    report = climb(model, x, targets=("c", "cortex-m4") if seed == 0 else ("c",))
    assert report.bit_exact, str(report)
    assert report.argmax_agreement >= 0.98, str(report)


def test_pytorch_argmax_agreement_over_multibit_models() -> None:
    """DESIGN §2.2 on multi-bit models: >= 99.9 % over 16 random models x 256 inputs."""
    agree, total = _argmax_agreement(random_multibit_model(400 + seed) for seed in range(16))
    assert agree / total >= 0.999, f"{agree}/{total}"
