"""The C target's speed paths (issue 16): every host vector path of bnc_simd.h this machine can
run, the generic kernel's three plane forms (int32, double, int64), the code-planar schedule,
and a layer emitted in two schedules chosen by the instruction set it is compiled for. Each
path is checked bit-exactly against the interpreter; a path this CPU cannot run is skipped
with a line that names it (``pytest -rs`` lists them)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnc.backends.c.emit import emit
from bnc.backends.c.lower import AltView, CodePlanarView, ConvView, PlanarView
from bnc.backends.c.lower import lower as c_lower
from bnc.backends.c.toolchain import HOST, build
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph, Node
from bnc.ir.passes import lower
from bnc.sim import host

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from differential import assert_equal  # noqa: E402
from irgen import multibit_dag, random_dag, random_graph, random_input  # noqa: E402

from bench.common import conv_graph  # noqa: E402

CPU = Path("/proc/cpuinfo").read_text()
# name: (CFLAGS, ARCH, the cpuinfo flag it needs, the popdot path bnc_simd.h must pick)
PATHS = {
    "portable": ("-O2 -DBNC_PORTABLE", None, None, "portable"),
    "ssse3": ("-O2", "-mssse3 -mno-avx", None, "portable"),
    "avx2": ("-O2", "-mavx2 -mno-avx512f", "avx2", "avx2"),
    "avx512bw": ("-O2", "-march=native -mno-avx512vpopcntdq", "avx512bw", "avx2"),
    "avx512-vpopcntdq": ("-O2", "-march=native", "avx512_vpopcntdq", "avx512vpopcntdq"),
}


def _needs(flag: str | None, path: str) -> None:
    if flag is not None and f" {flag}" not in CPU:
        pytest.skip(f"this machine has no {flag}: the {path} path could not run here")


def _picked(folder: Path, cflags: str, arch: str | None) -> str:
    """The popdot path bnc_simd.h selects under these flags (its BNC_POPDOT_ISA)."""
    probe = folder / "probe.c"
    probe.write_text('#include "bnc_simd.h"\nconst char *bnc_path = BNC_POPDOT_ISA;\n')
    out = subprocess.run(
        ["cc", "-E", "-P", *cflags.split(), *(arch or "").split(), str(probe)],
        cwd=folder, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.rsplit("bnc_path = ", 1)[1].split('"')[1]


@pytest.mark.parametrize("path", list(PATHS))
def test_every_host_path_matches_interpreter(path: str, tmp_path: Path) -> None:
    """Random chains, graphs and multi-bit graphs in the auto and generic schedules, built for
    one vector path."""
    cflags, arch, flag, popdot = PATHS[path]
    _needs(flag, path)
    cases = [(lower(random_graph(s)), s, sched) for s in range(6) for sched in ("auto", "generic")]
    cases += [(lower(random_dag(s)), s, "auto") for s in range(4)]
    cases += [(lower(multibit_dag(s)), s, "generic") for s in range(30, 34)]
    for i, (graph, seed, sched) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        emit(graph, folder, "m", HOST, sched)
        build(folder, HOST, cflags=cflags, arch=arch)
        if i == 0:
            assert _picked(folder, cflags, arch) == popdot
        x = random_input(graph, 5, seed)
        got, _ = host.run(folder, x, HOST)
        assert_equal(graph, x, got, f"c {path} ({sched}, case {i})")


def _scaled(graph: Graph, shift: int, rng: np.random.Generator) -> Graph:
    """The graph with each Threshold's coefficients replaced by small random integers times
    2^shift (the plane's magnitude decides its C type)."""
    nodes = []
    for n in graph.nodes:
        op = n.op
        if isinstance(op, O.Threshold):
            t = rng.integers(-3, 4, size=op.t.shape).astype(np.int64) << shift
            s = rng.choice([-3, -2, -1, 1, 2, 3], size=op.s.shape).astype(np.int64) << shift
            c = rng.integers(-40, 41, size=op.c.shape).astype(np.int64) << shift
            op = dataclasses.replace(op, t=t, s=s, c=c)
        nodes.append(Node(op, n.args, n.out))
    return Graph(graph.input, tuple(nodes), graph.result)


@pytest.mark.parametrize(("shift", "form"), [(0, "i32"), (36, "f64"), (46, "")])
def test_generic_plane_forms(shift: int, form: str, tmp_path: Path) -> None:
    """The generic kernel forms its plane in int32, in double, or in int64 one channel at a
    time, by the bound on its partial sums; each form equals the interpreter."""
    rng = np.random.default_rng(shift)
    seen = 0
    for seed in range(6):
        graph = _scaled(lower(conv_graph(12 + 9 * seed, 6, 40, 0.5, seed)), shift, rng)
        views = [v for v in c_lower(graph, "m", "generic").layers if isinstance(v, ConvView)]
        seen += sum(v.input == "bits" and v.fast == form for v in views)
        folder = tmp_path / str(seed)
        folder.mkdir()
        emit(graph, folder, "m", HOST, "generic")
        x = random_input(graph, 6, seed)
        got, _ = host.run(folder, x, HOST)
        np.testing.assert_array_equal(got, np.asarray(interp.run(graph, x)).reshape(6, -1))
    assert seen >= 6


def test_code_input_layers_take_the_code_planar_schedule(tmp_path: Path) -> None:
    """A stride-1 layer over integer codes (the input quantizer's) is code-planar by default."""
    kinds = set()
    for seed in range(12):
        graph = lower(random_graph(seed))
        for v in c_lower(graph, "m").layers:
            kinds.add(type(v))
    assert CodePlanarView in kinds


def test_a_layer_in_two_schedules_by_instruction_set(tmp_path: Path) -> None:
    """Where the cost model ranks the schedules differently for AVX-512 VPOPCNTDQ and AVX2, the
    file holds both under #if; each build takes its own and equals the interpreter."""
    graph = conv_graph(64, 28, 64, 0.95)
    view = c_lower(graph, "m")
    alts = [v for v in view.layers if isinstance(v, AltView)]
    assert alts and isinstance(alts[0].a, ConvView) and isinstance(alts[0].b, PlanarView)
    emit(graph, tmp_path, "m", HOST)
    assert "#if defined(BNC_VPOPCNT)" in (tmp_path / "model.c").read_text()
    x = np.random.default_rng(1).normal(size=(4, 64, 28, 28)).astype(np.float32)
    want = np.asarray(interp.run(graph, x)).reshape(4, -1)
    ran = []
    for path in ("avx2", "avx512-vpopcntdq"):
        cflags, arch, flag, _ = PATHS[path]
        if flag is not None and f" {flag}" not in CPU:
            continue
        pre = subprocess.run(
            ["cc", "-E", "-P", *cflags.split(), *(arch or "").split(), "model.c"],
            cwd=tmp_path, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert ("nib + L0_off[e]" in pre) == (path == "avx2")  # the planar kernel or not
        build(tmp_path, HOST, cflags=cflags, arch=arch)
        got, _ = host.run(tmp_path, x, HOST)
        np.testing.assert_array_equal(got, want)
        ran.append(path)
    if len(ran) < 2:
        pytest.skip(f"only {', '.join(ran) or 'no'} x86 vector path could run here")
