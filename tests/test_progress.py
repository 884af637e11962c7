"""The long steps' progress lines (bnc.progress): a start line, a line with the elapsed time
while the step runs, and an end line that says done or failed, with the time."""

from __future__ import annotations

import sys

from bnc import progress


def test_a_slow_step_reports_while_it_runs(capsys) -> None:
    args = [sys.executable, "-c", "import time, sys; time.sleep(0.5); print('out')"]
    proc = progress.run(args, "sleeping", every=0.1)
    assert proc.returncode == 0 and proc.stdout == "out\n"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "bnc: sleeping ..."
    assert (
        sum(line.startswith("bnc: sleeping: ") and line.endswith(" s so far") for line in lines)
        >= 2
    )
    assert lines[-1].startswith("bnc: sleeping: done in ")


def test_a_failed_step_says_so(capsys) -> None:
    args = [sys.executable, "-c", "import sys; sys.stderr.write('bad'); sys.exit(3)"]
    proc = progress.run(args, "failing")
    assert proc.returncode == 3 and proc.stderr == "bad"
    assert capsys.readouterr().err.splitlines()[-1].startswith("bnc: failing: failed (exit 3) in ")


def test_elapsed_reads_minutes() -> None:
    assert progress.elapsed(12.34) == "12.3 s"
    assert progress.elapsed(245.2) == "4 min 05 s"
