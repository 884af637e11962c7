"""The C targets (host, arm64, armv7) and both schedules match the interpreter bit for bit."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnc.backends.c.emit import FILES, emit
from bnc.backends.c.lower import PlanarView
from bnc.backends.c.lower import lower as c_lower
from bnc.backends.c.toolchain import ARM64, ARMV7, HOST, CTarget, binary, build
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes import lower
from bnc.ir.types import real
from bnc.sim import host

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import assert_equal, check  # noqa: E402
from irgen import random_dag, random_graph, random_input, real_concat_graph  # noqa: E402


@pytest.fixture(autouse=True)
def _compiler() -> None:
    """A missing compiler is a skip with its reason locally and a failure in CI."""
    require_tool("make")
    require_tool("cc")


SEEDS = range(25)


def _emit(seed: int, folder: Path, n: int = 16, target: CTarget = HOST, schedule: str = "auto"):
    graph = lower(random_graph(seed))
    emit(graph, folder, f"random{seed}", target, schedule)
    x = random_input(graph, n, seed)
    want = np.asarray(interp.run(graph, x)).reshape(n, -1)
    return graph, x, want


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_interpreter(seed: int, tmp_path: Path) -> None:
    graph, x, _ = _emit(seed, tmp_path)
    got, stats = host.run(tmp_path, x, HOST)
    assert_equal(graph, x, got, "c")
    assert stats["samples"] == x.shape[0]
    assert stats["seconds_per_sample"] >= 0


def test_sanitizers_clean(tmp_path: Path) -> None:
    for seed in (0, 3):
        folder = tmp_path / str(seed)
        folder.mkdir()
        _, x, want = _emit(seed, folder, n=4, schedule="planar")
        flags = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"
        build(folder, HOST, cflags=flags)  # a toolchain without sanitizers is a failure
        xin, yout = folder / "x.f32", folder / "y.i64"
        x.astype("<f4").tofile(xin)
        proc = subprocess.run(
            [str(binary(folder)), str(xin), str(yout)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        got = np.fromfile(yout, dtype="<i8").reshape(x.shape[0], -1)
        np.testing.assert_array_equal(got, want)


def test_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    graph = lower(random_graph(7))
    emit(graph, a, "m", HOST, "planar")
    emit(lower(random_graph(7)), b, "m", HOST, "planar")
    for name in [*FILES, "bnc_simd.h"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert b"do not edit" in (a / name).read_bytes()


def test_bad_input_size(tmp_path: Path) -> None:
    graph, x, _ = _emit(1, tmp_path, n=2)
    exe = build(tmp_path, HOST)
    bad = tmp_path / "bad.f32"
    bad.write_bytes(b"\0" * (4 * x[0].size + 1))
    proc = subprocess.run([str(exe), str(bad), str(tmp_path / "o.i64")], capture_output=True)
    assert proc.returncode == 2
    assert proc.stderr


@pytest.mark.parametrize("first", ["quantize", "wide", "sign"])
def test_input_straight_to_linear(first: str, tmp_path: Path) -> None:
    """One layer on the input: the final layer reads the codes (or the input's sign bits)."""
    rng = np.random.default_rng(5)
    shape = (3, 4, 5)
    head: O.Op = {
        "quantize": O.QuantizeInput("in", 1 / 255, 0, 255),
        "wide": O.QuantizeInput("in", 1 / 40000, -40000, 40000),
        "sign": O.Sign("in"),
    }[first]
    fc = O.BinaryLinear(
        "fc", rng.random((7, 60)) < 0.5, rng.normal(size=7), rng.normal(size=7), rng.normal(size=7)
    )
    graph = lower(Graph.chain(real(shape), (head, O.Flatten("flat"), fc)))
    emit(graph, tmp_path, "tiny", HOST)
    x = rng.uniform(-1.5, 1.5, size=(9, *shape)).astype(np.float32)
    x[0, 0, 0, 0] = np.float32(0.5 / 255)  # ties round to even
    x[1, 0, 0, 0] = np.float32(1.5 / 255)
    x[2, 0, 0, 0] = 0.0
    got, _ = host.run(tmp_path, x, HOST)
    np.testing.assert_array_equal(got, np.asarray(interp.run(graph, x)).reshape(9, -1))


def test_cmake_project_builds(tmp_path: Path) -> None:
    require_tool("cmake")
    emit(lower(random_graph(5)), tmp_path, "m", HOST, "planar")
    build_dir = tmp_path / "cmake-build"
    subprocess.run(
        ["cmake", "-S", str(tmp_path), "-B", str(build_dir)], check=True, capture_output=True
    )
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
    assert (build_dir / "model").is_file()


# --- schedules, instruction sets and the ARM targets -------------------------------------

VARIANTS = {
    "portable": ("-O2 -DBNC_PORTABLE", None),
    "ssse3": ("-O2", "-mssse3 -mno-avx"),
    "avx2": ("-O2", "-mavx2 -mno-avx512f"),  # the AVX2 path also on an AVX-512 machine
    "native": (None, None),  # AVX2 or AVX-512BW where this machine has them
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("schedule", ["planar", "generic"])
def test_host_instruction_sets(variant: str, schedule: str, tmp_path: Path) -> None:
    """Every vector path of bnc_simd.h, and the generic kernel, on the same random models."""
    cflags, arch = VARIANTS[variant]
    if variant == "avx2" and " avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this machine has no AVX2: the avx2 path could not run here")
    planar = 0
    for seed in range(8):
        folder = tmp_path / str(seed)
        folder.mkdir()
        graph, x, want = _emit(seed, folder, n=6, schedule=schedule)
        planar += sum(isinstance(v, PlanarView) for v in c_lower(graph, "m", schedule).layers)
        if cflags or arch:
            build(folder, HOST, cflags=cflags, arch=arch)
        got, _ = host.run(folder, x, HOST)
        assert_equal(graph, x, got, f"c {variant} (seed {seed})")
    assert (planar > 0) == (schedule == "planar")


@pytest.mark.parametrize("target", [ARM64, ARMV7], ids=lambda t: t.name)
@pytest.mark.parametrize("schedule", ["planar", "generic"])
def test_arm_targets(target: CTarget, schedule: str, tmp_path: Path) -> None:
    """NEON code, cross-compiled and run under qemu-user, equals the interpreter."""
    require_tool(target.cc)
    require_tool(target.runner[0])
    for seed in range(10):
        folder = tmp_path / str(seed)
        folder.mkdir()
        graph, x, _ = _emit(seed + 100, folder, n=5, target=target, schedule=schedule)
        got, stats = host.run(folder, x, target)
        assert_equal(graph, x, got, f"{target.name} (seed {seed + 100})")
        assert stats["emulated"] == target.runner[0]


EDGE_CASES = {
    # (C, H, W, O, k, pad): no interior at all, odd channels, 1x1, wide pad, tall image
    "kernel-larger-than-interior": (5, 5, 5, 9, 7, 3),
    "odd-channels": (33, 6, 9, 65, 3, 1),
    "one-by-one": (70, 4, 3, 31, 1, 0),
    "pad-2-of-3": (12, 7, 4, 8, 3, 2),
    "single-column": (9, 11, 1, 3, 3, 1),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("target", [HOST, ARM64, ARMV7], ids=lambda t: t.name)
def test_planar_borders(case: str, target: CTarget, tmp_path: Path) -> None:
    """Border positions (taps outside the image) in the planar schedule, hidden and final."""
    require_tool(target.cc)
    for tool in target.runner:
        require_tool(tool)
    c, h, w, o, k, pad = EDGE_CASES[case]
    rng = np.random.default_rng(sum(EDGE_CASES[case]))

    def conv(name: str, ci: int, co: int) -> O.BinaryConv2d:
        b = rng.random((co, ci, k, k)) < rng.choice([0.05, 0.5])
        a_, b_ = rng.normal(size=co), rng.normal(size=co)
        return O.BinaryConv2d(name, b, a_, b_, rng.normal(size=co), (1, 1), (pad, pad))

    bn = O.BatchNorm(
        "bn",
        rng.normal(size=o),
        rng.normal(size=o),
        rng.normal(size=o) * 4,
        rng.uniform(0.5, 2, o),
        1e-5,
    )
    ops = (O.Sign("in"), conv("c1", c, o), bn, O.Sign("s1"), conv("c2", o, 5))
    graph = lower(Graph.chain(real((c, h, w)), ops))
    view = c_lower(graph, "m", "planar")
    assert all(isinstance(v, PlanarView) for v in view.layers)
    emit(graph, tmp_path, "edge", target, "planar")
    x = rng.normal(size=(7, c, h, w)).astype(np.float32)
    got, _ = host.run(tmp_path, x, target)
    np.testing.assert_array_equal(got, np.asarray(interp.run(graph, x)).reshape(7, -1))


# --- graphs: residual blocks, two-branch blocks, concat, fan-out, global pools -------------


@pytest.mark.parametrize("schedule", ["planar", "generic"])
def test_graphs_match_interpreter(schedule: str, tmp_path: Path) -> None:
    for seed in range(12):
        graph = lower(random_dag(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 8, seed), "c", folder, schedule=schedule)


@pytest.mark.parametrize("target", [ARM64, ARMV7], ids=lambda t: t.name)
def test_graphs_on_arm(target: CTarget, tmp_path: Path) -> None:
    require_tool(target.cc)
    require_tool(target.runner[0])
    for seed in range(4):
        graph = lower(random_dag(seed + 50))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 4, seed), target.name, folder)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**16), blocks=st.integers(0, 5))
def test_random_graphs_property(seed: int, blocks: int, tmp_path: Path) -> None:
    """Hypothesis over graph structure; a failure shrinks to the fewest blocks."""
    graph = lower(random_dag(seed, blocks))
    folder = Path(tempfile.mkdtemp(prefix=f"{seed}-{blocks}-", dir=tmp_path))
    check(graph, random_input(graph, 6, seed), "c", folder)


def test_concat_of_reals_on_c(tmp_path: Path) -> None:
    for seed in range(3):
        graph = lower(real_concat_graph(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 8, seed), "c", folder)


@pytest.mark.parametrize("target", [ARM64, ARMV7], ids=lambda t: t.name)
def test_concat_of_reals_on_arm(target: CTarget, tmp_path: Path) -> None:
    require_tool(target.cc)
    require_tool(target.runner[0])
    graph = lower(real_concat_graph(1))
    check(graph, random_input(graph, 4, 1), target.name, tmp_path)
