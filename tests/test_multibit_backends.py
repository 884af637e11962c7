"""Multi-bit graphs (every weight form of DESIGN §2.5, k-bit activations, 8-bit residual
streams, max-pools of codes) on every C dialect, bit for bit against the interpreter; the fpga
target refuses them with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bnc import targets
from bnc.backends.c.emit import emit
from bnc.backends.c.lower import PlanarView
from bnc.backends.c.lower import lower as c_lower
from bnc.backends.c.toolchain import HOST, build
from bnc.backends.core import UnsupportedGraph
from bnc.ir.passes import lower
from bnc.sim import host

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import assert_equal, check  # noqa: E402
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


def test_fpga_builds_or_refuses_multibit_graphs_with_one_line(tmp_path: Path) -> None:
    """The fpga target builds k-bit activations, multi-level weights and code shortcuts
    (tests/test_backend_fpga.py runs them); what it does not build yet (requantized codes:
    the 8-bit residual streams) it refuses with one line and writes nothing."""
    built, refused = 0, 0
    for seed in range(16):
        out = tmp_path / str(seed)
        try:
            targets.get("fpga").emit(lower(multibit_dag(seed)), out, "m")
            built += 1
            assert (out / "rtl" / "m_top.v").is_file()
        except UnsupportedGraph as e:
            refused += 1
            msg = str(e)
            assert "\n" not in msg and msg.startswith("fpga: ") and "requantized codes" in msg
            assert not out.exists() or not any(out.iterdir())
    assert built and refused


VARIANTS = {
    "portable": ("-O2 -DBNC_PORTABLE", None),
    "ssse3": ("-O2", "-mssse3 -mno-avx"),
    "avx2": ("-O2", "-mavx2 -mno-avx512f"),
    "native": (None, None),  # AVX-512BW where this machine has it (else AVX2)
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_multibit_planar_kernel_on_every_host_instruction_set(variant: str, tmp_path: Path):
    """The planar kernel over bit planes of codes and several masks, on each vector path."""
    cflags, arch = VARIANTS[variant]
    if variant == "avx2" and " avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this machine has no AVX2: the avx2 path could not run here")
    groups = 0
    for seed in range(20, 26):
        graph = lower(multibit_dag(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        emit(graph, folder, "m", HOST, "planar")
        views = [v for v in c_lower(graph, "m", "planar").layers if isinstance(v, PlanarView)]
        groups += sum(v.groups > 1 for v in views)
        build(folder, HOST, cflags=cflags, arch=arch)
        x = random_input(graph, 6, seed)
        got, _ = host.run(folder, x, HOST)
        assert_equal(graph, x, got, f"c {variant} (seed {seed})")
    assert groups > 0  # some layer had several masks or input planes
