"""The Cortex-M cores: compiler flags, the qemu machine that boots them, building the example
image, and reading its size (``arm-none-eabi-size``) and stack use (``-fstack-usage``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bnc.errors import BncError

SOURCES = ("model.c", "model.h", "main.c", "startup.c", "mps2.ld", "Makefile")
PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
# The qemu machines' SysTick counts a 25 MHz system clock; ``-icount shift=8`` makes one
# instruction 256 ns of virtual time: 40 / 256 instructions per tick.
ICOUNT_SHIFT = 8
SYSCLK_NS = 40


@dataclass(frozen=True)
class McuTarget:
    name: str
    core: str
    cpu: str  # compiler flags for the core and its FPU
    machine: str  # qemu-system-arm -M


CORTEX_M4 = McuTarget(
    "cortex-m4",
    "Cortex-M4F",
    "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard",
    "mps2-an386",
)
CORTEX_M7 = McuTarget(
    "cortex-m7",
    "Cortex-M7F",
    "-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard",
    "mps2-an500",
)
MCU_TARGETS = {t.name: t for t in (CORTEX_M4, CORTEX_M7)}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BncError(
            f"the Cortex-M targets need '{tool}', which is not installed;"
            f" install the Debian packages: {PACKAGES}"
        )
    return path


def image(folder: Path) -> Path:
    return folder / "build" / "model.elf"


def build(folder: Path, make_args: tuple[str, ...] = ()) -> Path:
    """``make`` in ``folder`` unless the image is newer than every source (or ``make_args``
    such as ``CFLAGS=-Os`` ask for a rebuild)."""
    elf = image(folder)
    if not make_args and elf.is_file():
        newest = max((folder / s).stat().st_mtime for s in SOURCES if (folder / s).exists())
        if elf.stat().st_mtime >= newest:
            return elf
    require("make")
    require("arm-none-eabi-gcc")
    args = ["make", "-s", *(["-B"] if make_args else []), *make_args, "build/model.elf"]
    proc = subprocess.run(args, cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise BncError(f"{folder}: arm-none-eabi-gcc failed:\n{tail}")
    return elf


@dataclass(frozen=True)
class Size:
    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data


def size(path: Path) -> Size:
    """Berkeley sizes: text (code + read-only data), data, bss."""
    proc = subprocess.run(
        [require("arm-none-eabi-size"), "-B", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BncError(f"{path}: arm-none-eabi-size failed: {proc.stderr.strip()}")
    fields = proc.stdout.strip().splitlines()[-1].split()
    return Size(int(fields[0]), int(fields[1]), int(fields[2]))


def stack_bound(su_file: Path) -> int:
    """An upper bound of the library's stack from ``-fstack-usage``: ``bnc_infer``'s frame plus
    the two largest other frames (the calls go at most three deep: bnc_infer, a layer, a
    counting helper when the compiler does not inline it)."""
    frames: dict[str, int] = {}
    for line in su_file.read_text().splitlines():
        m = re.match(r"\S+:\d+:\d+:(\w+)\s+(\d+)\s+(\S+)", line)
        if m:
            frames[m.group(1)] = int(m.group(2))
    top = frames.pop("bnc_infer", 0)
    others = sorted(frames.values(), reverse=True)[:2]
    return top + sum(others)
