"""The differential helper every target's tests use (DESIGN §4): emit a lowered graph for a
target, run it on inputs, compare with the interpreter bit for bit, and on a difference name
the output layer, the element and every stage's value there (T and S of each operand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnc import targets
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph


def first_difference(graph: Graph, x: np.ndarray, got: np.ndarray, target: str) -> str:
    values = interp.run_all(graph, x)
    n = x.shape[0]
    want = np.asarray(values[graph.result]).reshape(n, -1)
    if got.shape != want.shape:
        return f"{target}: output shape {got.shape}, the interpreter's {want.shape}"
    sample, flat = (int(v) for v in np.argwhere(got != want)[0])
    out = next(nd for nd in graph.nodes if isinstance(nd.op, O.OutputAffine))
    ch, y, xx = np.unravel_index(flat, graph.types[out.out].shape)
    stages = []
    for v in out.args:
        s = values[v]
        name = graph.producer(v).op.name  # type: ignore[union-attr]
        stages.append(
            f"T[{name}]={int(s.t[sample, 0, y, xx])} S[{name}]={int(s.s[sample, ch, y, xx])}"
        )
    return (
        f"{target}: layer '{out.op.name}', sample {sample}, element ({ch}, {y}, {xx}): "
        f"{' '.join(stages)} interpreter={int(want[sample, flat])}"
        f" {target}={int(got[sample, flat])}"
    )


def assert_equal(graph: Graph, x: np.ndarray, got: np.ndarray, target: str) -> None:
    """``got`` (a target's accumulators for ``x``) equals the interpreter bit for bit; else the
    failure names the layer, the element and every stage's value."""
    want = np.asarray(interp.run(graph, x)).reshape(x.shape[0], -1)
    if got.dtype != np.int64 or got.shape != want.shape or not (got == want).all():
        raise AssertionError(first_difference(graph, x, got, target))


def check(graph: Graph, x: np.ndarray, target: str, folder: Path, **options) -> dict:
    """Emit, build, run and compare; returns the runner's stats."""
    tgt = targets.get(target)
    tgt.emit(graph, folder, "m", **options)
    got, stats = tgt.run(folder, x)
    assert_equal(graph, x, got, target)
    return stats
