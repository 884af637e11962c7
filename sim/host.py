"""Run a C artifact on the host: build it once, feed the batch as raw float32, read int64."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bnc.backends.c.toolchain import build
from bnc.errors import BncError


def run(folder: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Accumulators (N, outputs) int64 and the runner's stats for a float32 batch ``x``."""
    exe = build(folder)
    n = x.shape[0]
    with tempfile.TemporaryDirectory(prefix="bnc-run-") as tmp:
        xin, yout, stats = Path(tmp) / "x.f32", Path(tmp) / "y.i64", Path(tmp) / "stats.json"
        np.ascontiguousarray(x, dtype="<f4").tofile(xin)
        proc = subprocess.run(
            [str(exe), str(xin), str(yout), str(stats)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BncError(f"{exe}: failed ({proc.stderr.strip() or proc.returncode})")
        acc = np.fromfile(yout, dtype="<i8").reshape(n, -1)
        info = json.loads(stats.read_text())
    return acc, info
