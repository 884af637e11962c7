"""The target table: what each ``--target`` name emits and how its artifact runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnc.errors import BncError
from bnc.ir.graph import Graph

PLANNED = ("arm64", "armv7", "cortex-m4", "cortex-m7", "fpga")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    emit: Callable[[Graph, Path, str], None]
    run: Callable[[Path, np.ndarray], tuple[np.ndarray, dict[str, Any]]]


def _c_target() -> Target:
    from bnc.backends.c.emit import emit
    from bnc.sim.host import run

    return Target("c", "portable C99, runs on the host", emit, run)


_FACTORIES: dict[str, Callable[[], Target]] = {"c": _c_target}


def names() -> list[str]:
    return [*_FACTORIES, *PLANNED]


def get(name: str) -> Target:
    if name not in _FACTORIES:
        ready = ", ".join(_FACTORIES)
        if name in PLANNED:
            raise BncError(f"target '{name}' is not available yet in this version; ready: {ready}")
        raise BncError(f"unknown target '{name}'; choose one of: {', '.join(names())}")
    return _FACTORIES[name]()
