"""The target table: what each ``--target`` name emits and how its artifact runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bnc.errors import BncError

PLANNED: tuple[str, ...] = ()
DESCRIPTIONS = {
    "c": "C99 for the host; AVX-512BW/AVX2/SSSE3 kernels where the compiler allows",
    "arm64": "C99 + NEON for AArch64 Linux (aarch64-linux-gnu-gcc), runs under qemu-aarch64",
    "armv7": "C99 + NEON for ARMv7-A Linux (arm-linux-gnueabihf-gcc), runs under qemu-arm",
    "fpga": "a streaming Verilog accelerator (yosys synth_xilinx estimate), runs under Verilator",
    "cortex-m4": "C99 for Cortex-M4F, no heap, static arena (arm-none-eabi-gcc), runs under"
    " qemu-system-arm -M mps2-an386",
    "cortex-m7": "C99 for Cortex-M7F, no heap, static arena (arm-none-eabi-gcc), runs under"
    " qemu-system-arm -M mps2-an500",
}
C_SCHEDULES = ("auto", "generic", "planar")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    emit: Callable[..., Any]  # (graph, folder, name, **options); may return a view model
    run: Callable[[Path, np.ndarray], tuple[np.ndarray, dict[str, Any]]]
    schedules: tuple[str, ...] = ()  # the values ``--schedule`` takes (none: no such option)


def _c_target(name: str) -> Target:
    from bnc.backends.c.emit import emit
    from bnc.backends.c.toolchain import C_TARGETS
    from bnc.sim.host import run

    ct = C_TARGETS[name]
    return Target(
        name, DESCRIPTIONS[name], partial(emit, target=ct), partial(run, target=ct), C_SCHEDULES
    )


def _mcu_target(name: str) -> Target:
    from bnc.backends.mcu.emit import emit
    from bnc.backends.mcu.lower import SCHEDULES
    from bnc.backends.mcu.toolchain import MCU_TARGETS
    from bnc.sim.mcu import run

    mt = MCU_TARGETS[name]
    return Target(
        name, DESCRIPTIONS[name], partial(emit, target=mt), partial(run, target=mt), SCHEDULES
    )


def _fpga_target() -> Target:
    from bnc.backends.fpga.emit import emit
    from bnc.sim.fpga import run

    return Target("fpga", DESCRIPTIONS["fpga"], emit, run)


_FACTORIES: dict[str, Callable[[], Target]] = {
    **{n: partial(_c_target, n) for n in ("c", "arm64", "armv7")},
    "fpga": _fpga_target,
    **{n: partial(_mcu_target, n) for n in ("cortex-m4", "cortex-m7")},
}


def names() -> list[str]:
    return [*_FACTORIES, *PLANNED]


def get(name: str) -> Target:
    if name not in _FACTORIES:
        ready = ", ".join(_FACTORIES)
        if name in PLANNED:
            raise BncError(f"target '{name}' is not available yet in this version; ready: {ready}")
        raise BncError(f"unknown target '{name}'; choose one of: {', '.join(names())}")
    return _FACTORIES[name]()
