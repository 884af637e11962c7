"""The QONNX generators themselves: exported files agree with their Brevitas modules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import qonnxgen as qg  # noqa: E402


def test_random_inputs_hold_the_adversarial_values() -> None:
    x = qg.random_inputs((1, 8, 8), 32, seed=3)
    assert x.dtype == np.float32 and x.shape == (32, 1, 8, 8)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.all(x[0] == 0.0) and np.all(x[1] == 1.0) and np.all(x[2] == 0.5)
    assert np.isin(np.float32(0.25), x) and np.isin(np.float32(128 / 255), x)
    assert np.array_equal(x, qg.random_inputs((1, 8, 8), 32, seed=3))


@pytest.mark.parametrize("which", ["tfc_2w2a", "residual"])
def test_export_matches_module(which: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    if which == "residual":
        module, shape = qg.residual_model(seed=0, bits=3), (1, 12, 12)
    else:
        module, shape = qg.finn_model(which, seed=0), qg.input_shape(which)
    path = qg.export(module, shape, tmp_path / "m.onnx")
    x = qg.random_inputs(shape, 8, seed=1)
    want = qg.torch_reference(module, x)
    got = qg.reference(path, x)
    assert got.shape == (8, 10)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(np.unique(want.argmax(1))) > 1
