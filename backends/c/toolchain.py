"""The C dialects (host, ARM Linux) and building an emitted folder with its compiler."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bnc.errors import BncError

SOURCES = ("main.c", "model.c", "model.h", "Makefile", "bnc_simd.h")


@dataclass(frozen=True)
class CTarget:
    """How one ``--target`` builds and runs the emitted C."""

    name: str
    cc: str  # the compiler the generated Makefile uses
    arch: str  # instruction-set flags (the Makefile's ARCH)
    ldflags: str
    runner: tuple[str, ...]  # prefix that executes the binary (an emulator), or ()
    packages: str  # Debian packages that provide cc and the runner
    cross: bool  # the Makefile pins CC instead of taking the environment's
    unit: str = "nibble"  # planar entries: nibble (pshufb lookups) or byte (NEON vcnt)


HOST = CTarget("c", "cc", "-march=native", "", (), "gcc make", False)
ARM64 = CTarget(
    "arm64",
    "aarch64-linux-gnu-gcc",
    "-march=armv8-a",
    "-static",
    ("qemu-aarch64",),
    "gcc-aarch64-linux-gnu qemu-user",
    True,
    "byte",
)
ARMV7 = CTarget(
    "armv7",
    "arm-linux-gnueabihf-gcc",
    "-march=armv7-a -mfpu=neon -mfloat-abi=hard",
    "-static",
    ("qemu-arm",),
    "gcc-arm-linux-gnueabihf qemu-user",
    True,
    "byte",
)
C_TARGETS = {t.name: t for t in (HOST, ARM64, ARMV7)}


def binary(folder: Path) -> Path:
    return folder / "build" / "model"


def _require(tool: str, target: CTarget) -> None:
    if shutil.which(tool) is None:
        raise BncError(
            f"target '{target.name}' needs '{tool}', which is not installed;"
            f" install the Debian packages: {target.packages}"
        )


def build(
    folder: Path, target: CTarget, cflags: str | None = None, arch: str | None = None
) -> Path:
    """``make`` in ``folder`` unless ``build/model`` is newer than every source; ``cflags`` and
    ``arch`` override the Makefile's CFLAGS and ARCH (and force a rebuild)."""
    exe = binary(folder)
    if cflags is None and arch is None and exe.is_file():
        newest = max((folder / s).stat().st_mtime for s in SOURCES if (folder / s).exists())
        if exe.stat().st_mtime >= newest:
            return exe
    _require("make", target)
    _require(target.cc, target)
    args = ["make", "-s", "-B"] + ([f"CFLAGS={cflags}"] if cflags is not None else [])
    args += [f"ARCH={arch}"] if arch is not None else []
    proc = subprocess.run(args, cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise BncError(f"{folder}: the C compiler failed:\n{tail}")
    return exe


def command(folder: Path, target: CTarget) -> list[str]:
    """The command line that runs the built binary (under the target's emulator if any)."""
    if target.runner:
        _require(target.runner[0], target)
    return [*target.runner, str(binary(folder))]
