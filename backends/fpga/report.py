"""The FPGA part of ``report.md``: folding, cycles per stage, frame rate, and the resources
yosys estimates (``bnc report`` runs the synthesis once and caches it in the folder)."""

from __future__ import annotations

from pathlib import Path

from bnc.backends.fpga.lower import ConvEngine, FpgaView
from bnc.backends.fpga.toolchain import synthesize


def render(view: FpgaView) -> str:
    lines = [
        "## Hardware (fpga)",
        "",
        f"Clock {view.clock_mhz:g} MHz; "
        + (
            f"folded for {view.fps_target:g} frames/s ({view.budget:,} cycles per frame)."
            if view.fps_target
            else f"no --fps-target: folded to the slowest stage ({view.budget:,} cycles)."
        ),
        f"Cycle model: a new frame every {view.interval:,} cycles"
        f" ({view.fps:,.0f} frames/s), latency about {view.latency:,} cycles"
        f" ({view.latency / view.clock_mhz:,.1f} us).",
        "",
        "| stage | passes x lanes | chunks x channels | threshold units x lanes"
        " | weight columns (generated / zero) | weights | cycles per frame | LUT estimate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    stages = dict(view.stage_cycles())
    lines.append(f"| input stream | - | - | - | - | - | {stages['input stream']:,} | - |")
    for e in view.engines:
        if isinstance(e, ConvEngine):
            where = "block ROM" if e.block else "LUT constants"
            units = "- (writes the plane)" if e.output else f"{e.units} x {e.serial}"
            lines.append(
                f"| {e.name} | {e.groups} x {e.pe} | {e.chunks} x {e.simd} | {units}"
                f" | {e.live:,} / {e.dead:,} | {where} | {e.cycles:,} | {e.luts:,} |"
            )
        else:
            lines.append(
                f"| {e.name} (max-pool) | 1 x {e.c} | 1 x {e.c} | - | - | - | {e.cycles:,} | - |"
            )
    lines.append(f"| output stream | - | - | - | - | - | {stages['output stream']:,} | - |")
    lines.append("")
    return "\n".join(lines) + "\n"


def resources_section(folder: Path) -> str:
    r = synthesize(folder)
    return (
        "\n## Resources (yosys synth_xilinx, 7-series)\n\n"
        f"- LUTs: {r.luts:,} ({r.logic_luts:,} logic + {r.lutram_luts:,} as memory)\n"
        f"- flip-flops: {r.ffs:,}\n"
        f"- block RAM: {r.bram36:g} RAMB36 equivalents\n"
        f"- DSP48E1: {r.dsps:,}\n\n"
        "yosys estimates differ from Vivado's place-and-route counts (different LUT packing and"
        " cross-boundary optimisation), typically by 10-30 % either way.\n"
    )
