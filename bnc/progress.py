"""Progress of the long steps (a Verilator build, a yosys synthesis): a line when a step
starts, a line with the elapsed time every ``EVERY`` seconds while it runs, and one when it
ends, on standard error, so that a user can tell a slow step from a hung one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

EVERY = 30.0  # seconds between the lines of a step still running


def elapsed(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s"


def say(msg: str) -> None:
    print(f"bnc: {msg}", file=sys.stderr, flush=True)


def run(
    args: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
    every: float = EVERY,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``subprocess.run(args, capture_output=True, text=True)`` with progress lines: ``what``
    is the step ("building the Verilator model of out/"); the caller checks the return code."""
    say(f"{what} ...")
    t0 = time.perf_counter()
    with subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        while True:
            try:
                out, err = proc.communicate(timeout=every)
                break
            except subprocess.TimeoutExpired:
                say(f"{what}: {elapsed(time.perf_counter() - t0)} so far")
    state = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    say(f"{what}: {state} in {elapsed(time.perf_counter() - t0)}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
