"""The Cortex-M part of ``report.md`` (constants per layer, the arena plan) and of ``bnc
report`` (flash and SRAM of the built library and image, from ``arm-none-eabi-size``)."""

from __future__ import annotations

import json
from pathlib import Path

from bnc.backends.c.lower import PoolView, SumPoolView
from bnc.backends.mcu.lower import CODE_PLANES, BitConv, CodeConv, Layer, McuView
from bnc.backends.mcu.toolchain import MCU_TARGETS, build, size, stack_bound


def render(view: McuView, fp32_bytes: int) -> str:
    a = view.arena
    ratio = fp32_bytes / view.weight_bytes if view.weight_bytes else 0.0
    lines = [
        "## Microcontroller",
        "",
        f"Constants in flash: {view.weight_bytes:,} bytes (weights packed to the bit or as"
        f" sparse entries, thresholds narrowed); the model's fp32 parameters take"
        f" {fp32_bytes:,} bytes, {ratio:.1f}x more.",
        f"Activations: one static arena of {a.size:,} bytes, placed by a liveness plan; one"
        f" buffer per tensor would take {a.per_tensor:,} bytes (saving"
        f" {a.per_tensor - a.size:,}). The largest layer ({a.peak_layer}) sets the size."
        + (
            f" Two-branch residual layers add an int64 partial-plane arena of"
            f" {a.plane_bytes:,} bytes: {a.sram:,} bytes of static RAM in all."
            if a.plane_bytes
            else ""
        ),
        "",
        "Code tensors are held at their bit width: "
        + (
            f"codes of up to {view.code_planes} bits as bit planes (counted like bits), wider ones"
            if view.code_planes
            else "all"
        )
        + " as integers in their narrowest C type (bit planes are used up to"
        f" {CODE_PLANES} bits where the estimates find them faster). A multi-level layer is one"
        " kernel: its masks are counted over one window walk, T once.",
        "",
        "| layer | schedule | masks x input planes | input | constants (bytes) | threshold type |",
        "|---|---|---|---|---|---|",
    ]
    for v in view.layers:
        coef = getattr(v, "coef", None)
        kind = "-" if coef is None else f"{coef.store} ({coef.math} math)"
        lines.append(
            f"| {v.name} | {v.schedule} | {_shape(v)} | {_input(v)} | {v.weight_bytes:,} | {kind} |"
        )
    return "\n".join(lines) + "\n"


def _shape(v: Layer) -> str:
    if isinstance(v, BitConv):
        return f"{v.masks} x {v.planes_in}"
    if isinstance(v, CodeConv):
        return f"{v.masks} x -"
    return "-"


def _input(v: Layer) -> str:
    """How the layer's input is held."""
    if isinstance(v, BitConv):
        return "bits" if v.wj == (2,) else f"{v.planes_in} bit planes"
    if isinstance(v, CodeConv):
        return v.src_type
    if isinstance(v, PoolView):
        return f"{v.planes} bit planes" if v.planes else v.src_type
    if isinstance(v, SumPoolView):
        return {"bits": "bits", "planes": f"{v.planes} bit planes"}.get(v.input, v.src_type)
    return "bits"


def sizes_section(folder: Path) -> str:
    """Build the example (if needed) and measure the library object and the whole image."""
    manifest = json.loads((folder / "bnc.json").read_text(encoding="utf-8"))
    target = MCU_TARGETS[manifest["target"]]
    elf = build(folder)
    lib = size(elf.parent / "model.o")
    img = size(elf)
    stack = stack_bound(elf.parent / "model.su")
    return (
        f"\n## Memory (arm-none-eabi-size, {target.core}, -O2)\n\n"
        "| | flash (text + data) | SRAM (data + bss) | stack bound |\n|---|---|---|---|\n"
        f"| library (model.o) | {lib.flash:,} | {lib.data + lib.bss:,} | {stack:,} |\n"
        f"| example image (model.elf, with semihosting I/O and start-up) | {img.flash:,}"
        f" | {img.data + img.bss:,} | + 4,096 reserved |\n\n"
        "The library's SRAM is the arena plus a few words; its stack bound is bnc_infer's"
        " frame plus the two largest other frames (-fstack-usage).\n"
    )
