"""Multi-bit graphs (every weight form of DESIGN §2.5, k-bit activations, 8-bit residual
streams, max-pools of codes) on every C dialect, bit for bit against the interpreter; the fpga
target refuses them with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bnc import targets
from bnc.backends.core import UnsupportedGraph
from bnc.ir.passes import lower

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import check  # noqa: E402
from irgen import multibit_dag, random_input  # noqa: E402

TOOLS = {
    "c": ("cc",),
    "arm64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
    "armv7": ("arm-linux-gnueabihf-gcc", "qemu-arm"),
    "cortex-m4": ("arm-none-eabi-gcc", "qemu-system-arm"),
    "cortex-m7": ("arm-none-eabi-gcc", "qemu-system-arm"),
}
SEEDS = {"c": range(12), "arm64": range(4), "armv7": range(4, 8), "cortex-m4": range(8, 12),
         "cortex-m7": range(12, 16)}  # fmt: skip


@pytest.mark.parametrize(("target", "seed"), [(t, s) for t, seeds in SEEDS.items() for s in seeds])
def test_multibit_graph_is_bit_exact(target: str, seed: int, tmp_path: Path) -> None:
    for tool in TOOLS[target]:
        require_tool(tool)
    graph = lower(multibit_dag(seed))
    check(graph, random_input(graph, 12, seed), target, tmp_path)


def test_fpga_refuses_multibit_graphs_with_one_line(tmp_path: Path) -> None:
    seen = set()
    for seed in range(8):
        with pytest.raises(UnsupportedGraph) as e:
            targets.get("fpga").emit(lower(multibit_dag(seed)), tmp_path / str(seed), "m")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("fpga: ")
        seen |= {w for w in ("k-bit activations", "multi-level weights") if w in msg}
        assert not (tmp_path / str(seed)).exists() or not any((tmp_path / str(seed)).iterdir())
    assert seen == {"k-bit activations", "multi-level weights"}
