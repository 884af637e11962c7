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
from bnc.backends.c.lower import AltView, ConvView, PlanarView
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
    "avx512bw": ("-O2", "-march=native -mno-avx512vpopcntdq -mno-avx512vnni", "avx512bw", "avx2"),
    "avx512-vpopcntdq": ("-O2", "-march=native", "avx512_vpopcntdq", "avx512vpopcntdq"),
}
# the code-dot kernel's path (BNC_DOTQ_ISA) under each; -march=native takes VNNI where the CPU
# has it
DOTQ = {
    "portable": "portable",
    "ssse3": "portable",
    "avx2": "avx2",
    "avx512bw": "avx512bw",
    "avx512-vpopcntdq": "avx512vnni" if " avx512_vnni" in CPU else "avx512bw",
}


def _needs(flag: str | None, path: str) -> None:
    if flag is not None and f" {flag}" not in CPU:
        pytest.skip(f"this machine has no {flag}: the {path} path could not run here")


def _picked(folder: Path, cflags: str, arch: str | None, macro: str = "BNC_POPDOT_ISA") -> str:
    """The path bnc_simd.h selects under these flags (its BNC_POPDOT_ISA, or ``macro``)."""
    probe = folder / "probe.c"
    probe.write_text(f'#include "bnc_simd.h"\nconst char *bnc_path = {macro};\n')
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
            assert _picked(folder, cflags, arch, "BNC_DOTQ_ISA") == DOTQ[path]
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
def test_generic_plane_forms(shift: int, form: str, tmp_path: Path, monkeypatch) -> None:
    """The generic kernel forms its plane in int32, in double, or in int64 one channel at a
    time, by the bound on its partial sums; each form equals the interpreter. (The target
    narrows single-layer thresholds first, which would make nearly all of them int32; here
    that pass is off, so the wide coefficients reach the kernel.)"""
    import bnc.backends.c.lower as c_lowering

    monkeypatch.setattr(c_lowering.NarrowThresholds, "apply", lambda self, graph: graph)
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


def test_code_input_layers_take_code_dot_or_code_planar(tmp_path: Path) -> None:
    """A layer over 8-bit codes (the input quantizer's) takes the code-dot kernel where the
    cost model says so (the bundled model's first layer: 1 -> 64, 3x3, 28x28), code-planar
    when asked for (``planar``) or where sparse weights make it cheaper; ``generic`` over codes
    is code-dot. Each equals the interpreter."""
    graph = conv_graph(1, 28, 64, 0.5, 3, codes=True)
    for schedule, want in (("auto", "dot"), ("generic", "dot"), ("planar", "code-planar")):
        first = c_lower(graph, "m", schedule).layers[0]
        got = first.input if isinstance(first, ConvView) else first.kind
        assert got == want, schedule
        folder = tmp_path / schedule
        folder.mkdir()
        emit(graph, folder, "m", HOST, schedule)
        x = random_input(graph, 4, 0)
        out, _ = host.run(folder, x, HOST)
        assert_equal(graph, x, out, f"c {schedule}")
    kinds = set()
    for seed in range(12):
        for v in c_lower(lower(random_graph(seed)), "m").layers:
            kinds.add(v.input if isinstance(v, ConvView) else type(v).__name__)
    assert {"dot", "CodePlanarView"} <= kinds


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


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_give_the_same_answers(threads: int, tmp_path: Path, monkeypatch) -> None:
    """Compiled for several threads, run with BNC_THREADS from 1 to that many (uneven shares
    included): every output equals the interpreter."""
    cases = [lower(random_graph(s)) for s in range(40, 44)]
    cases += [lower(random_dag(s)) for s in range(40, 43)]
    cases += [lower(multibit_dag(s)) for s in range(40, 43)]
    cases += [conv_graph(40, 9, 70, 0.9), conv_graph(64, 7, 40, 0.5, kernel=7, pad=0)]
    # code-dot: the bundled model's first layer, and a strided one of 20 channels (T in the
    # padding lanes) over three input channels with a 5-wide kernel (two quads a row)
    cases += [conv_graph(1, 28, 64, 0.5, codes=True)]
    cases += [conv_graph(3, 15, 20, 0.5, kernel=5, stride=2, pad=2, codes=True)]
    for i, graph in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        emit(graph, folder, "m", HOST, "auto", threads)
        assert f"#define BNC_THREADS_MAX {threads}" in (folder / "model.h").read_text()
        x = random_input(graph, 5, i)
        for n in range(1, threads + 1):
            monkeypatch.setenv("BNC_THREADS", str(n))
            got, _ = host.run(folder, x, HOST)
            assert_equal(graph, x, got, f"c, {n} of {threads} threads (case {i})")


def test_threads_on_arm64_under_qemu(tmp_path: Path, monkeypatch) -> None:
    from conftest import require_tool

    from bnc.backends.c.toolchain import ARM64

    require_tool(ARM64.cc)
    require_tool(ARM64.runner[0])
    for seed in range(2):
        graph = lower(random_dag(50 + seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        emit(graph, folder, "m", ARM64, "auto", 2)
        monkeypatch.setenv("BNC_THREADS", "2")
        x = random_input(graph, 4, seed)
        got, _ = host.run(folder, x, ARM64)
        assert_equal(graph, x, got, f"arm64, 2 threads (seed {seed})")


def test_cli_threads(tmp_path: Path, capsys, monkeypatch) -> None:
    """--threads N on a C target: the manifest keeps it and `bnc run` gives the answers of one
    thread; elsewhere, or out of range, one error line and exit 2, nothing written."""
    from bnc.api import Artifact
    from bnc.cli import main

    model = Path(__file__).resolve().parents[1] / "examples" / "fashion_bnn.pt"
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["compile", str(model), "-o", str(one)]) == 0
    assert main(["compile", str(model), "--threads", "2", "-o", str(two)]) == 0
    assert Artifact.open(two).manifest["threads"] == 2
    x = np.load(model.parent / "fashion_test.npz")["images"][:20].astype(np.float32) / 255
    x = x.reshape(-1, 1, 28, 28)
    monkeypatch.setenv("BNC_THREADS", "2")
    np.testing.assert_array_equal(
        Artifact.open(two).run_acc(x)[0], Artifact.open(one).run_acc(x)[0]
    )
    for argv, needle in (
        (["--threads", "2", "--target", "cortex-m4"], "threads apply to the c, arm64, armv7"),
        (["--threads", "0"], "from 1 to 64"),
    ):
        capsys.readouterr()
        out = tmp_path / "bad"
        assert main(["compile", str(model), *argv, "-o", str(out)]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("bnc: error: ") and needle in line, line
        assert not out.exists()


def test_pinned_generic_case_at_o3(tmp_path: Path) -> None:
    """The graph on which GCC 12 -O3 misvectorized the generic kernel's pixel loop (found by
    the hypothesis run of test_backend_c): built with the default flags it equals the
    interpreter."""
    graph = lower(random_dag(181, 3))
    emit(graph, tmp_path, "m", HOST, "generic")
    x = random_input(graph, 6, 181)
    for cflags in ("-O3", "-O3 -DBNC_PORTABLE"):
        build(tmp_path, HOST, cflags=cflags)
        got, _ = host.run(tmp_path, x, HOST)
        assert_equal(graph, x, got, f"c generic {cflags}")
