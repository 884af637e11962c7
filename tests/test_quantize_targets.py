"""``bnc quantize`` then ``bnc compile`` on every target, as a user would: float models of
shapes the other tests do not use (three input channels, odd widths, a residual CNN saved with
``torch.export``), quantized from their files with pruning and a byte budget, each compiled
target equal to the interpreter bit for bit on samples that were not the calibration set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bnc
from bnc.backends.core import UnsupportedGraph
from bnc.ladder import climb

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from test_multibit_backends import TOOLS  # noqa: E402
from test_quantize import _randomize_bn  # noqa: E402

SHAPE = (3, 10, 14)


def odd_chain() -> nn.Module:
    torch.manual_seed(7)
    return _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU(),
        nn.Conv2d(5, 9, 3, padding=1), nn.BatchNorm2d(9), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(9, 7, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(7, 6),
    ), 7)  # fmt: skip


class Net(nn.Module):
    """A small residual CNN with its own forward: a stem, a block with an identity shortcut
    and a strided one with a 1x1 projection, global average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(6)
        self.c1, self.b1 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.c3, self.b3 = nn.Conv2d(6, 10, 3, 2, 1, bias=False), nn.BatchNorm2d(10)
        self.c4, self.b4 = nn.Conv2d(10, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10)
        self.proj, self.bp = nn.Conv2d(6, 10, 1, 2, bias=False), nn.BatchNorm2d(10)
        self.fc = nn.Linear(10, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + x)
        y = self.b4(self.c4(F.relu(self.b3(self.c3(x)))))
        x = F.relu(y + self.bp(self.proj(x)))
        return self.fc(x.mean((2, 3)))


def _save(model: nn.Module, path: Path) -> Path:
    if type(model) is nn.Sequential:
        torch.save(model, path)
    else:
        path = path.with_suffix(".pt2")
        torch.export.save(torch.export.export(model, (torch.zeros(1, *SHAPE),)), path)
    return path


def _data(n: int, seed: int) -> np.ndarray:
    # not images in [0, 1]: signed inputs, as a normalised dataset gives
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


# (model, quantize options)
CASES = {
    "odd-chain-w2a2-prune": (odd_chain, {"weights": 2, "activations": 2, "prune": 0.4}),
    "odd-chain-budget-a3": (odd_chain, {"weights": 3, "activations": 3, "budget": 600}),
    "resnet-w2a4-ternary": (lambda: _randomize_bn(Net(), 8),
                            {"weights": 2, "activations": 4, "method": "ternary"}),
    "resnet-w1a2-prune": (lambda: _randomize_bn(Net(), 9),
                          {"weights": 1, "activations": 2, "prune": 0.5}),
}  # fmt: skip


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, Path]]:
    out = {}
    for name, (make, opts) in CASES.items():
        d = tmp_path_factory.mktemp(name)
        src = _save(make(), d / "float.pt")
        np.save(d / "x.npy", _data(48, 1))
        q = bnc.quantize(src, d / "x.npy", output=d / "q.pt", **opts)  # type: ignore[arg-type]
        out[name] = (q.model, d / "q.pt")
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_c_dialect_is_bit_exact(case: str, quantized: dict) -> None:
    for tools in TOOLS.values():
        for tool in tools:
            require_tool(tool)
    model, path = quantized[case]
    compiled = bnc.compile(path, target="c")
    report = climb(model, _data(9, 2), tuple(TOOLS), compiled)
    assert report.bit_exact, str(report)
    assert report.argmax_agreement >= 0.85, str(report)


# the fpga target builds chains of k-bit codes; residual adds of k-bit planes it refuses
FPGA_REFUSES = {"resnet-w2a4-ternary": "adds a partial plane", "resnet-w1a2-prune": "adds a"
                " partial plane"}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_fpga_is_bit_exact_or_refuses_in_one_line(
    case: str, quantized: dict, tmp_path: Path
) -> None:
    model, path = quantized[case]
    compiled = bnc.compile(path, target="fpga")
    if case in FPGA_REFUSES:
        with pytest.raises(UnsupportedGraph) as e:
            compiled.save(tmp_path / "out")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("fpga: layer '") and FPGA_REFUSES[case] in msg
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        return
    report = climb(model, _data(3, 3), ("fpga",), compiled)
    assert report.bit_exact, str(report)
