"""Shared pieces of the benchmarks: single-layer graphs, building and timing C artifacts."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bnc.backends.c.emit import emit
from bnc.backends.c.toolchain import HOST, binary, build
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes import lower
from bnc.ir.types import real


def conv_graph(
    c: int,
    h: int,
    o: int,
    alpha_share: float,
    seed: int = 0,
    symmetric: bool = False,
    kernel: int = 3,
    stride: int = 1,
    pad: int = 1,
    codes: bool = False,
) -> Graph:
    """Sign input (C, H, H) (``codes``: 8-bit input codes, as a first layer) → a binary conv
    (3×3 stride-1 pad-1 unless told; GDQ, ``alpha_share`` of the weights at alpha;
    ``symmetric``: plain ±1 weights) → batch norm → sign → a one-output linear head (negligible
    cost)."""
    rng = np.random.default_rng(seed)
    b = rng.random((o, c, kernel, kernel)) >= alpha_share
    lo, hi = (-1.0, 1.0) if symmetric else (-0.3, 1.1)
    conv = O.BinaryConv2d(
        "conv", b, np.full(o, lo), np.full(o, hi), np.zeros(o), (stride, stride), (pad, pad)
    )
    oh = (h + 2 * pad - kernel) // stride + 1
    bn = O.BatchNorm(
        "bn",
        rng.uniform(0.5, 2, o),
        rng.normal(size=o),
        rng.normal(size=o) * 5,
        rng.uniform(0.5, 2, o),
        1e-5,
    )
    head = O.BinaryLinear(
        "fc", rng.random((1, o * oh * oh)) < 0.5, np.full(1, -1.0), np.full(1, 1.0), np.zeros(1)
    )
    first = O.QuantizeInput("in", 1 / 255, 0, 255) if codes else O.Sign("in")
    ops = (first, conv, bn, O.Sign("act"), O.Flatten("flat"), head)
    return lower(Graph.chain(real((c, h, h)), ops))


PROFILE = "-O3 -DBNC_PROFILE"


def time_artifact(folder: Path, x: np.ndarray, repeats: int = 5, layer: int | None = None) -> float:
    """Median seconds per sample over ``repeats`` runs of batch ``x``: the whole inference, or
    one layer's share when the folder was built with ``PROFILE``."""
    exe = binary(folder)
    times = []
    with tempfile.TemporaryDirectory(prefix="bnc-bench-") as tmp:
        xin, yout, st = Path(tmp) / "x.f32", Path(tmp) / "y.i64", Path(tmp) / "s.json"
        x.astype("<f4").tofile(xin)
        for _ in range(repeats):
            subprocess.run([str(exe), str(xin), str(yout), str(st)], check=True)
            stats = json.loads(st.read_text())
            if layer is None:
                times.append(stats["seconds_per_sample"])
            else:
                times.append(stats["layer_seconds_per_sample"][layer])
    return statistics.median(times)


def build_host(
    graph: Graph, folder: Path, schedule: str, cflags: str | None = None, arch: str | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    emit(graph, folder, "bench", HOST, schedule)
    build(folder, HOST, cflags, arch)
    return folder
