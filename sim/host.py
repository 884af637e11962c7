"""Run a C artifact: build it once, feed the batch as raw float32, read int64 back.

The host target runs the binary directly; the ARM Linux targets run it under qemu-user."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bnc.backends.c.toolchain import CTarget, build, command
from bnc.errors import BncError


def run(folder: Path, x: np.ndarray, target: CTarget) -> tuple[np.ndarray, dict[str, Any]]:
    """Accumulators (N, outputs) int64 and the runner's stats for a float32 batch ``x``."""
    build(folder, target)
    cmd = command(folder, target)
    n = x.shape[0]
    with tempfile.TemporaryDirectory(prefix="bnc-run-") as tmp:
        xin, yout, stats = Path(tmp) / "x.f32", Path(tmp) / "y.i64", Path(tmp) / "stats.json"
        np.ascontiguousarray(x, dtype="<f4").tofile(xin)
        proc = subprocess.run(
            [*cmd, str(xin), str(yout), str(stats)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BncError(f"{cmd[-1]}: failed ({proc.stderr.strip() or proc.returncode})")
        acc = np.fromfile(yout, dtype="<i8").reshape(n, -1)
        info = json.loads(stats.read_text())
    info["target"] = target.name
    if target.runner:
        info["emulated"] = target.runner[0]
    return acc, info
