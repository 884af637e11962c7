"""Run a Cortex-M artifact: build the example image once, boot it in ``qemu-system-arm`` with
the batch in a private folder, read the accumulators and the instruction counts back.

The image talks to the host through semihosting (files ``input.f32``, ``output.i64`` and
``ticks.u64`` in qemu's current folder). ``-icount shift=8`` makes the virtual clock advance
256 ns per instruction, so SysTick (25 MHz) ticks convert exactly to instructions."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bnc.backends.mcu.toolchain import ICOUNT_SHIFT, SYSCLK_NS, McuTarget, build, require
from bnc.errors import BncError


def qemu_command(elf: Path, target: McuTarget) -> list[str]:
    return [
        require("qemu-system-arm"),
        "-M",
        target.machine,
        "-nographic",
        "-monitor",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        f"shift={ICOUNT_SHIFT}",
        "-kernel",
        str(elf),
    ]


def header_facts(folder: Path) -> tuple[int, list[str]]:
    """The output size and the layer names (in order) that model.h records."""
    outputs, layers = None, None
    for line in (folder / "model.h").read_text(encoding="utf-8").splitlines():
        if line.startswith("#define BNC_OUTPUT_SIZE "):
            outputs = int(line.split()[2])
        if line.startswith("/* Layers, in order: "):
            layers = line[len("/* Layers, in order: ") : -len(". */")].split(", ")
    if outputs is None or layers is None:
        raise BncError(f"{folder / 'model.h'}: not bnc's; recompile with 'bnc compile'")
    return outputs, layers


def run(folder: Path, x: np.ndarray, target: McuTarget) -> tuple[np.ndarray, dict[str, Any]]:
    """Accumulators (N, outputs) int64 and stats: instructions per sample (median, min, max)."""
    elf = build(folder).resolve()
    outputs, layers = header_facts(folder)
    n = x.shape[0]
    with tempfile.TemporaryDirectory(prefix="bnc-qemu-") as tmp:
        work = Path(tmp)
        np.ascontiguousarray(x, dtype="<f4").tofile(work / "input.f32")
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                qemu_command(elf, target),
                cwd=work,
                capture_output=True,
                text=True,
                timeout=120 + 2.0 * n,
            )
        except subprocess.TimeoutExpired:
            raise BncError(f"{elf}: qemu-system-arm did not finish in time") from None
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).strip().splitlines()
            raise BncError(f"{elf}: failed under qemu ({said[-1] if said else proc.returncode})")
        acc = np.fromfile(work / "output.i64", dtype="<i8")
        ticks = np.fromfile(work / "ticks.u64", dtype="<u8")
    if acc.size != n * outputs or ticks.size != n * (1 + len(layers)):
        raise BncError(f"{elf}: qemu wrote {acc.size // max(outputs, 1)} of {n} samples")
    table = ticks.reshape(n, -1).astype(np.float64) * SYSCLK_NS / (1 << ICOUNT_SHIFT)
    insns = table[:, 0]
    info: dict[str, Any] = {
        "target": target.name,
        "emulated": f"qemu-system-arm -M {target.machine}",
        "samples": n,
        "instructions_per_sample": float(np.median(insns)),
        "instructions_min": float(insns.min()),
        "instructions_max": float(insns.max()),
        "layer_instructions_per_sample": {
            name: float(v) for name, v in zip(layers, np.median(table[:, 1:], axis=0), strict=True)
        },
        "emulator_seconds": seconds,
    }
    return acc.reshape(n, outputs), info
