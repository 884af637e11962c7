"""Build an emitted C folder with the host compiler (once; rebuilt when sources change)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bnc.errors import BncError

SOURCES = ("main.c", "model.c", "model.h", "Makefile")


def binary(folder: Path) -> Path:
    return folder / "build" / "model"


def build(folder: Path, cflags: str | None = None) -> Path:
    """``make`` in ``folder`` unless ``build/model`` is newer than every source."""
    exe = binary(folder)
    if cflags is None and exe.is_file():
        newest = max((folder / s).stat().st_mtime for s in SOURCES)
        if exe.stat().st_mtime >= newest:
            return exe
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        raise BncError("building the C target needs 'make' and a C compiler (cc)")
    args = ["make", "-s", "-B"] + ([f"CFLAGS={cflags}"] if cflags is not None else [])
    proc = subprocess.run(args, cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise BncError(f"{folder}: the C compiler failed:\n{tail}")
    return exe
