"""The differential helper every target's tests use (DESIGN §4): emit a lowered graph for a
target, run it on inputs, compare with the interpreter bit for bit, and on a difference name
the output layer, the element and every stage's value there (``bnc.ladder.first_difference``,
the report ``bnc.ladder.climb`` gives too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnc import targets
from bnc.ir import interpreter as interp
from bnc.ir.graph import Graph
from bnc.ladder import first_difference


def assert_equal(graph: Graph, x: np.ndarray, got: np.ndarray, target: str) -> None:
    """``got`` (a target's accumulators for ``x``) equals the interpreter bit for bit; else the
    failure names the layer, the element and every stage's value."""
    want = np.asarray(interp.run(graph, x)).reshape(x.shape[0], -1)
    if got.dtype != np.int64 or got.shape != want.shape or not (got == want).all():
        raise AssertionError(str(first_difference(graph, interp.run_all(graph, x), got, target)))


def check(graph: Graph, x: np.ndarray, target: str, folder: Path, **options) -> dict:
    """Emit, build, run and compare; returns the runner's stats."""
    tgt = targets.get(target)
    tgt.emit(graph, folder, "m", **options)
    got, stats = tgt.run(folder, x)
    assert_equal(graph, x, got, target)
    return stats
