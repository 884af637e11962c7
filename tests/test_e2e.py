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
from modelgen import random_batch, random_model  # noqa: E402

SEEDS = range(16)
_agree: list[tuple[int, float]] = []


@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_is_bit_exact_in_c(seed: int) -> None:
    model, shape = random_model(1000 + seed)
    x = random_batch(shape, 64, seed)
    report = climb(model, x, targets=("c",))
    assert report.targets_equal == {"c": True}, str(report)
    _agree.append((report.samples, report.argmax_agreement))
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
    assert "kernel" in compiled.report().lower()
    again = bnc.compile(model, torch.zeros(1, *shape)).save(tmp_path / "out2")
    for f in sorted(p.name for p in folder.iterdir() if p.is_file()):
        assert (folder / f).read_bytes() == (again / f).read_bytes(), f
