"""Graph forms at their edges, on every C dialect: a global pool straight over the input's
codes, the input's codes as a residual shortcut, and a residual sum as the network output."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph
from bnc.ir.passes import lower

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import check  # noqa: E402
from irgen import _conv, _Dag, batch_norm, levels, random_input, weights  # noqa: E402

TOOLS = {
    "c": ("cc",),
    "arm64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
    "cortex-m4": ("arm-none-eabi-gcc", "qemu-system-arm"),
}


def _head(g: _Dag, rng: np.random.Generator, x: str) -> str:
    alpha, beta = levels(rng, 4)
    flat = g.add(O.Flatten("flat"), x)
    fc = O.BinaryLinear("fc", weights(rng, (4, g.types[flat].size), 0.5), alpha, beta,
                        rng.normal(size=4))  # fmt: skip
    return g.add(fc, flat)


def pool_of_input_codes(rng: np.random.Generator) -> Graph:
    g = _Dag((3, 5, 5))
    q = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
    return g.graph(_head(g, rng, g.add(O.GlobalAvgPool("gap"), q)))


def codes_shortcut(rng: np.random.Generator) -> Graph:
    g = _Dag((3, 5, 5))
    q = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
    y = g.add(batch_norm(rng, "bn", 3), g.add(_conv(rng, "c", 3, 3, 3, 1, 1, 0.5), q))
    return g.graph(_head(g, rng, g.add(O.Sign("s"), g.add(O.Add("add"), y, q))))


def residual_output(rng: np.random.Generator) -> Graph:
    g = _Dag((2, 4, 4))
    x = g.add(O.Sign("in"), INPUT)
    a = g.add(batch_norm(rng, "b1", 5), g.add(_conv(rng, "c1", 2, 5, 3, 1, 1, 0.5), x))
    b = g.add(_conv(rng, "c2", 2, 5, 1, 1, 0, 0.5), x)
    return g.graph(g.add(O.Add("add"), a, b))


@pytest.mark.parametrize("make", [pool_of_input_codes, codes_shortcut, residual_output])
@pytest.mark.parametrize("target", list(TOOLS))
def test_graph_edges(make, target: str, tmp_path: Path) -> None:
    for tool in ("make", *TOOLS[target]):
        require_tool(tool)
    for seed in range(2):
        graph = make(np.random.default_rng(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(lower(graph), random_input(graph, 6, seed), target, folder)
