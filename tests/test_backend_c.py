"""The portable C backend: emitted code matches the reference interpreter bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnc.backends.c.emit import FILES, emit
from bnc.backends.c.toolchain import binary, build
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes import lower
from bnc.ir.types import real
from bnc.sim import host

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from irgen import random_graph, random_input  # noqa: E402


@pytest.fixture(autouse=True)
def _compiler() -> None:
    """A missing compiler is a skip with its reason locally and a failure in CI."""
    require_tool("make")
    require_tool("cc")


SEEDS = range(25)


def _emit(seed: int, folder: Path, n: int = 16):
    graph = lower(random_graph(seed))
    emit(graph, folder, f"random{seed}")
    x = random_input(graph, n, seed)
    want = np.asarray(interp.run(graph, x)).reshape(n, -1)
    return graph, x, want


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_interpreter(seed: int, tmp_path: Path) -> None:
    _, x, want = _emit(seed, tmp_path)
    got, stats = host.run(tmp_path, x)
    assert got.dtype == np.int64
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert stats["samples"] == x.shape[0]
    assert stats["seconds_per_sample"] >= 0


def test_sanitizers_clean(tmp_path: Path) -> None:
    for seed in (0, 3):
        folder = tmp_path / str(seed)
        folder.mkdir()
        _, x, want = _emit(seed, folder, n=4)
        flags = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"
        try:
            build(folder, cflags=flags)
        except Exception as e:  # pragma: no cover - toolchain without sanitizers
            pytest.skip(f"sanitizers unavailable: {e}")
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
    emit(graph, a, "m")
    emit(lower(random_graph(7)), b, "m")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert b"do not edit" in (a / name).read_bytes()


def test_bad_input_size(tmp_path: Path) -> None:
    graph, x, _ = _emit(1, tmp_path, n=2)
    exe = build(tmp_path)
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
    graph = lower(Graph(real(shape), (head, O.Flatten("flat"), fc)))
    emit(graph, tmp_path, "tiny")
    x = rng.uniform(-1.5, 1.5, size=(9, *shape)).astype(np.float32)
    x[0, 0, 0, 0] = np.float32(0.5 / 255)  # ties round to even
    x[1, 0, 0, 0] = np.float32(1.5 / 255)
    x[2, 0, 0, 0] = 0.0
    got, _ = host.run(tmp_path, x)
    np.testing.assert_array_equal(got, np.asarray(interp.run(graph, x)).reshape(9, -1))


def test_cmake_project_builds(tmp_path: Path) -> None:
    require_tool("cmake")
    emit(lower(random_graph(5)), tmp_path, "m")
    build_dir = tmp_path / "cmake-build"
    subprocess.run(
        ["cmake", "-S", str(tmp_path), "-B", str(build_dir)], check=True, capture_output=True
    )
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
    assert (build_dir / "model").is_file()
