"""The three model file formats import to the same graph as the live module."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.frontend import from_module, load_model, parse_input_shape
from bnc.ir import interpreter as interp


def model(pool_first: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    block = [bn.BinaryConv2d(3, 5, 3, stride=2, padding=1, bias=True, per_channel=True)]
    block += (
        [nn.MaxPool2d(2), nn.BatchNorm2d(5), bn.Sign()]
        if pool_first
        else [nn.BatchNorm2d(5), bn.Sign(), nn.MaxPool2d(2)]
    )
    m = nn.Sequential(
        bn.InputQuantizer(signed=True, scale=1 / 100, input_shape=(3, 10, 10)),
        *block,
        bn.BinaryConv2d(5, 7, 1, quantizer="symmetric"),
        nn.BatchNorm2d(7),
        bn.Sign(),
        nn.Dropout(0.1),
        nn.Flatten(),
        bn.BinaryLinear(7 * 2 * 2, 4),
        nn.BatchNorm1d(4),
    )
    for sub in m.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.normal_()
            sub.weight.data.normal_()
    return m.eval()


def save(m: nn.Module, kind: str, path: Path) -> Path:
    if kind == "pickle":
        torch.save(m, path)
    elif kind == "torchscript":
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(m).save(str(path))
    else:
        torch.export.save(torch.export.export(m, (torch.zeros(1, 3, 10, 10),)), path)
    return path


@pytest.mark.parametrize("kind", ["pickle", "torchscript", "export"])
@pytest.mark.parametrize("pool_first", [True, False])
def test_formats_match_pytorch(kind: str, pool_first: bool, tmp_path: Path) -> None:
    m = model(pool_first)
    imported = load_model(save(m, kind, tmp_path / "m.bin"))
    assert imported.source_format == kind and imported.input_shape == (3, 10, 10)
    x = torch.rand(32, 3, 10, 10) * 2 - 1
    ref = m(x).detach().numpy()
    got = interp.run(imported.graph, x.numpy()).reshape(32, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_functional_forward_and_vector_input() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sign = bn.Sign()
            self.fc = bn.BinaryLinear(20, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.sign(x), 1))

    imported = from_module(Net().eval(), (20,))
    assert imported.graph.input.shape == (20, 1, 1)


def test_relu_is_named(tmp_path: Path) -> None:
    m = nn.Sequential(bn.Sign(), bn.BinaryConv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(BncError, match="layer '2' is ReLU"):
        from_module(m, (1, 5, 5))


@pytest.mark.parametrize("text", ["", "abc", "0,28,28", "-1,2", "1,2,3,4"])
def test_bad_input_shapes(text: str) -> None:
    with pytest.raises(BncError, match="--input-shape"):
        parse_input_shape(text)


def test_state_dict_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(model().state_dict(), path)
    with pytest.raises(BncError, match="not a whole module"):
        load_model(path)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_batch_norm_eps_is_read_by_name(eps: float) -> None:
    """``aten.batch_norm`` ends with ``cudnn_enabled``, not ``eps``: reading the last argument
    took eps as 0 and moved thresholds by a relative 1e-5 (found on a trained model)."""
    from bnc.ir import ops as O

    m = model().eval()
    for sub in m.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.eps = eps
    graph = from_module(m, torch.zeros(1, 3, 10, 10), "m").graph
    found = [op.eps for op in graph.ops if isinstance(op, O.BatchNorm)]
    assert found == [eps] * 3
    x = torch.rand(64, 3, 10, 10) * 2 - 1
    with torch.no_grad():
        ref = m(x).numpy()
    import bnc

    got = bnc.compile(m, torch.zeros(1, 3, 10, 10)).run(x.numpy())
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4)


def graph_model() -> nn.Sequential:
    """Residual blocks (identity and two-branch), a concat with fan-out, a global pool."""
    torch.manual_seed(1)

    def body(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(bn.BinaryConv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout))

    down = nn.Sequential(bn.BinaryConv2d(5, 6, 1, 2), nn.BatchNorm2d(6))
    m = nn.Sequential(
        bn.InputQuantizer(signed=True, scale=1 / 100, input_shape=(3, 10, 10)),
        *body(3, 5, 1), bn.Sign(),
        bn.Residual(body(5, 5, 1)), bn.Sign(),
        bn.Residual(body(5, 6, 2), down), bn.Sign(),
        bn.Concat(nn.Identity(), nn.Sequential(*body(6, 2, 1), bn.Sign())),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), bn.BinaryLinear(8, 4), nn.BatchNorm1d(4),
    )  # fmt: skip
    for sub in m.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.normal_()
            sub.weight.data.normal_()
    return m.eval()


@pytest.mark.parametrize("kind", ["pickle", "torchscript", "export"])
def test_graph_formats_match_pytorch(kind: str, tmp_path: Path) -> None:
    """A graph model reads the same from every format (pickle without --trust)."""
    m = graph_model()
    imported = load_model(save(m, kind, tmp_path / "g.bin"))
    ops = {type(op).__name__ for op in imported.graph.ops}
    assert {"Add", "Concat", "GlobalAvgPool"} <= ops
    x = torch.rand(32, 3, 10, 10) * 2 - 1
    ref = m(x).detach().numpy()
    got = interp.run(imported.graph, x.numpy()).reshape(32, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
