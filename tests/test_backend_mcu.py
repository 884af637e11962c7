"""The Cortex-M targets: the library booted in qemu-system-arm equals the interpreter bit for
bit on random graphs, for both cores and both schedules; the arena plan never overlaps live
tensors; the build is warning-free under -Wall -Wextra -Werror at every -O level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnc.backends.mcu.emit import FILES, emit
from bnc.backends.mcu.lower import BitConv, CodeConv
from bnc.backends.mcu.lower import lower as mcu_lower
from bnc.backends.mcu.toolchain import CORTEX_M4, CORTEX_M7, McuTarget, build, size
from bnc.errors import BncError
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes import lower
from bnc.ir.types import real
from bnc.sim import mcu

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import assert_equal, check  # noqa: E402
from irgen import (  # noqa: E402
    batch_norm,
    levels,
    random_dag,
    random_graph,
    random_input,
    real_concat_graph,
    weights,
)

CORES = [CORTEX_M4, CORTEX_M7]


@pytest.fixture(autouse=True)
def _toolchain() -> None:
    """A missing tool is a skip with its reason locally and a failure in CI."""
    for tool in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
        require_tool(tool)


def _case(graph: Graph, folder: Path, target: McuTarget, schedule: str, n: int, seed: int):
    emit(graph, folder, "m", target, schedule)
    x = random_input(graph, n, seed)
    want = np.asarray(interp.run(graph, x)).reshape(n, -1)
    return x, want


@pytest.mark.parametrize("target", CORES, ids=lambda t: t.name)
@pytest.mark.parametrize("schedule", ["dense", "sparse", "sliced"])
def test_matches_interpreter(target: McuTarget, schedule: str, tmp_path: Path) -> None:
    for seed in range(8):
        folder = tmp_path / str(seed)
        folder.mkdir()
        graph = lower(random_graph(seed + 300))
        x, _ = _case(graph, folder, target, schedule, 6, seed)
        got, stats = mcu.run(folder, x, target)
        assert_equal(graph, x, got, f"{target.name} {schedule} (seed {seed + 300})")
        assert stats["samples"] == 6
        assert stats["instructions_min"] <= stats["instructions_per_sample"]
        assert stats["instructions_per_sample"] <= stats["instructions_max"]
        # the layers' counts add up to the whole inference, up to the hooks' own instructions
        layers = sum(stats["layer_instructions_per_sample"].values())
        assert (
            abs(layers - stats["instructions_per_sample"])
            < 60 * len(stats["layer_instructions_per_sample"]) + 0.01 * layers
        )


EDGE_CASES = {
    # (C, H, W, O, k, pad, stride): no interior, odd channels, 1x1, wide pad, one column, stride
    "kernel-larger-than-interior": (5, 5, 5, 9, 7, 3, 1),
    "odd-channels": (33, 6, 9, 65, 3, 1, 1),
    "one-by-one": (70, 4, 3, 31, 1, 0, 1),
    "pad-2-of-3": (12, 7, 4, 8, 3, 2, 2),
    "single-column": (9, 11, 1, 3, 3, 1, 1),
    "many-words": (200, 5, 5, 40, 3, 1, 1),
    "whole-image-kernel": (3, 5, 5, 10, 5, 0, 1),  # taps packed back to back
    "odd-c-unpadded-stride": (37, 7, 7, 12, 3, 0, 2),
}


def _edge_graph(case: str, seed: int, sparsity: float) -> Graph:
    c, h, w, o, k, pad, stride = EDGE_CASES[case]
    rng = np.random.default_rng(seed)
    ops: list[O.Op] = [O.Sign("in")]
    alpha, beta = levels(rng, o)
    wts = weights(rng, (o, c, k, k), 1 - sparsity)
    ops += [O.BinaryConv2d("conv", wts, alpha, beta, np.zeros(o), (stride,) * 2, (pad,) * 2)]
    ops += [batch_norm(rng, "bn", o), O.Sign("sign")]
    g = Graph.chain(real((c, h, w)), tuple(ops))
    size = g.output.size
    alpha, beta = levels(rng, 4)
    ops += [O.Flatten("flat"), O.BinaryLinear("fc", weights(rng, (4, size), 0.5), alpha, beta,
            rng.normal(size=4))]  # fmt: skip
    return lower(Graph.chain(real((c, h, w)), tuple(ops)))


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_borders_and_shapes(case: str, tmp_path: Path) -> None:
    """Border positions (padded taps), odd channel counts, wide windows: every schedule (sliced
    on dense weights counts the zeros of most kernels)."""
    for schedule, sparsity in (("dense", 0.5), ("sparse", 0.97), ("sliced", 0.5), ("sliced", 0.9)):
        folder = tmp_path / f"{schedule}-{sparsity}"
        folder.mkdir()
        graph = _edge_graph(case, 11, sparsity)
        x, want = _case(graph, folder, CORTEX_M4, schedule, 4, 5)
        got, _ = mcu.run(folder, x, CORTEX_M4)
        np.testing.assert_array_equal(got, want, err_msg=f"{case} {schedule}")


@pytest.mark.parametrize("target", CORES, ids=lambda t: t.name)
@pytest.mark.parametrize("cflags", ["-O0", "-Os", "-O3"])
def test_strict_build_every_level(target: McuTarget, cflags: str, tmp_path: Path) -> None:
    """The library and the example compile under -Wall -Wextra -Werror -pedantic."""
    emit(lower(random_graph(21)), tmp_path, "m", target, "auto")
    makefile = (tmp_path / "Makefile").read_text()
    assert "-Wall -Wextra -Werror" in makefile
    build(tmp_path, (f"CFLAGS={cflags}",))
    lib = size(tmp_path / "build" / "model.o")
    assert lib.text > 0
    su = (tmp_path / "build" / "model.su").read_text()
    assert "bnc_infer" in su


def test_no_heap_and_const_weights(tmp_path: Path) -> None:
    """The library references no allocator, and its only writable storage is the arena."""
    emit(lower(random_graph(4)), tmp_path, "m", CORTEX_M4, "auto")
    build(tmp_path)
    nm = subprocess.run(
        [require_tool("arm-none-eabi-nm"), str(tmp_path / "build" / "model.o")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    undefined = {line.split()[-1] for line in nm.splitlines() if " U " in line}
    assert not undefined & {"malloc", "calloc", "realloc", "free", "_sbrk"}
    writable = [line.split()[-1] for line in nm.splitlines() if line.split()[-2] in "bBdD"]
    assert writable == ["bnc_arena"], writable
    view = mcu_lower(lower(random_graph(4)), "m")
    lib = size(tmp_path / "build" / "model.o")
    assert lib.bss == view.arena.size and lib.data == 0


def test_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    emit(lower(random_graph(9)), a, "m", CORTEX_M7, "sparse")
    emit(lower(random_graph(9)), b, "m", CORTEX_M7, "sparse")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_part_limits_fail_the_link(tmp_path: Path) -> None:
    """make FLASH=... RAM=... refuses an image that would not fit, with bnc's message."""
    emit(lower(random_graph(2)), tmp_path, "m", CORTEX_M4, "auto")
    with pytest.raises(BncError, match="does not fit the flash limit"):
        build(tmp_path, ("FLASH=1K",))
    with pytest.raises(BncError, match="do not fit the RAM limit"):
        build(tmp_path, ("RAM=1K",))
    build(tmp_path, ("FLASH=4M", "RAM=4M"))


def test_nan_input_is_reported(tmp_path: Path) -> None:
    graph = lower(random_graph(1))
    x, _ = _case(graph, tmp_path, CORTEX_M4, "auto", 2, 0)
    x[1].flat[0] = np.nan
    with pytest.raises(BncError, match="NaN"):
        mcu.run(tmp_path, x, CORTEX_M4)


def test_sparse_form_skips_zero_words() -> None:
    """The sparse form has no entry for a zero weight word and a shift for a one-hot word."""
    graph = _edge_graph("odd-channels", 3, 0.99)
    view = mcu_lower(graph, "m", "sparse")
    conv = next(v for v in view.layers if isinstance(v, BitConv))
    o_words = conv.window_words
    assert len(conv.idx) + len(conv.hot) < conv.o * o_words
    assert len(conv.hot) > 0


@pytest.mark.parametrize("target", CORES, ids=lambda t: t.name)
@pytest.mark.parametrize("schedule", ["dense", "sparse", "sliced"])
def test_graphs_match_interpreter(target: McuTarget, schedule: str, tmp_path: Path) -> None:
    """Residual, two-branch, concat, fan-out and global-pool graphs, booted in qemu."""
    for seed in range(4):
        graph = lower(random_dag(seed + 20 * ["dense", "sparse", "sliced"].index(schedule)))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 4, seed), target.name, folder, schedule=schedule)


def test_two_branch_blocks_need_no_partial_planes() -> None:
    """On Cortex-M a 1x1 shortcut is computed inside its block's kernel, so residual graphs
    take no int64 partial planes (the C targets keep them; memory is no object there)."""
    found = 0
    for seed in range(60):
        graph = lower(random_dag(seed, 4))
        view = mcu_lower(graph, "m")
        found += sum(len(v.points) for v in view.layers if isinstance(v, BitConv | CodeConv))
        assert view.plane_words == 0 and view.arena.plane_bytes == 0
    assert found > 0


@pytest.mark.parametrize("target", CORES, ids=lambda t: t.name)
def test_concat_of_reals(target: McuTarget, tmp_path: Path) -> None:
    for seed in range(2):
        graph = lower(real_concat_graph(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 4, seed), target.name, folder)
