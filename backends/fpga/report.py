"""The FPGA part of ``report.md``: folding, cycles per stage, frame rate, the resources yosys
estimates, and for a board its place-and-route result (``bnc report`` runs each flow once and
caches it in the folder)."""

from __future__ import annotations

from pathlib import Path

from bnc.backends.fpga.lower import ConvEngine, FpgaView
from bnc.backends.fpga.toolchain import place_and_route, synthesize


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
            if e.levels:
                units += f", {e.levels} thresholds each"
            where += f", {e.masks} masks" if e.masks > 1 else ""
            where += "".join(f", + {s.kind} shortcut" for s in e.shortcuts)
            lines.append(
                f"| {e.name} | {e.groups} x {e.pe} | {e.chunks} x {e.simd} | {units}"
                f" | {e.live:,} / {e.dead:,} | {where} | {e.cycles:,} | {e.luts:,} |"
            )
        else:
            what = {"pool": "max-pool", "sum": "global average pool", "concat": "concat"}[e.kind]
            lines.append(
                f"| {e.name} ({what}) | 1 x {e.c} | 1 x {e.c} | - | - | - | {e.cycles:,} | - |"
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


def board_section(folder: Path) -> str:
    """The board flow's result: Fmax per clock against the asked clock, the cells used."""
    import json

    spec = json.loads((folder / "io.json").read_text(encoding="utf-8"))
    if "board" not in spec:
        return ""
    from bnc.backends.fpga import board as boards

    b = boards.get(spec["board"])
    r = place_and_route(folder)
    lines = [f"\n## Board {b.name} ({b.part}): nextpnr-ecp5\n"]
    for clock, (got, want) in r.fmax.items():
        verdict = "met" if got >= want else f"NOT met ({100 * (want - got) / want:.0f} % short)"
        lines.append(f"- clock {clock}: Fmax {got:.1f} MHz for {want:g} MHz: {verdict}")
    lines.append("")
    lines.append("| cell | used | available | % |")
    lines.append("|---|---|---|---|")
    for cell, (used, avail) in sorted(r.utilization.items()):
        if used:
            lines.append(f"| {cell} | {used:,} | {avail:,} | {100 * used / avail:.1f} |")
    lines.append("")
    lines.append(f"Bitstream: {r.bitstream.relative_to(folder)}; load it with `{b.loader}`.")
    return "\n".join(lines) + "\n"
