"""Render the FPGA view model into the output folder (byte-for-byte deterministic).

The folder holds the Verilog (``rtl/``: the generated engines and top, their ROM contents as
``$readmemh`` files, and copies of the ``hw/`` blocks they instantiate), ``files.f``, a
Verilator batch harness and its Makefile, a yosys script, ``io.json`` (what the runner needs
to feed and read the stream) and a cocotb test of the top with vectors from the
interpreter."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from bnc import templates
from bnc.backends.fpga import board as boards
from bnc.backends.fpga.lower import ConvEngine, Engine, FpgaView, lower
from bnc.ir import interpreter
from bnc.ir.graph import Graph
from bnc.sim import verilator

TEMPLATES = {
    "harness.cpp": "harness.cpp.j2",
    "Makefile": "Makefile.j2",
    "synth.ys": "synth.ys.j2",
    "cocotb/test_top.py": "test_top.py.j2",
}
VECTORS = 4  # frames in the cocotb test's vectors


def verilog_ident(text: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return ident if re.match(r"[A-Za-z]", ident) else f"m_{ident}"


def io_spec(view: FpgaView) -> dict[str, object]:
    """What a runner needs to feed the input stream and read the output one."""
    return {
        "name": view.name,
        "top": f"{view.name}_top",
        "simulator": f"obj/{view.name}_sim",
        "input": {
            "kind": "bits" if view.in_bits else "codes",
            "shape": [view.in_c, view.in_h, view.in_w],
            "scale": view.scale,
            "qmin": view.qmin,
            "qmax": view.qmax,
            **_input_decoding(view),
            "bits_per_channel": view.qw,
            "words32_per_pixel": view.in_words32,
        },
        "output": {"shape": [view.out_c, view.out_h, view.out_w], "order": "y, x, channel"},
        "cycles": {"interval": view.interval, "latency": view.latency},
        "clock_mhz": view.clock_mhz,
    }


def _input_decoding(view: FpgaView) -> dict[str, float | int]:
    """The input op's remaining parameters (the Sign threshold; the quantizer's float32
    ``x * mul + add`` and zero point: the stream holds ``q - zero_point``)."""
    inp = view.input_step
    return {"threshold": inp.threshold, "zero_point": inp.zero_point, "mul": inp.mul,
            "add": inp.add}  # fmt: skip


def stream_words(graph: Graph, x: np.ndarray, spec: dict) -> np.ndarray:
    """The input stream of a float32 batch: (N, H*W, words32) uint32, the first op (input
    quantizer or Sign) applied exactly as the interpreter does; codes as values q - zero_point."""
    first = graph.nodes[0]
    codes = interpreter.run_op(first.op, (x,), (graph.input,)).astype(np.int64)
    return pack_codes(codes - graph.types[first.out].zero_point, spec)


def pack_codes(codes: np.ndarray, spec: dict) -> np.ndarray:
    inp = spec["input"]
    qw, words = int(inp["bits_per_channel"]), int(inp["words32_per_pixel"])
    n, c, h, w = codes.shape
    pix = codes.transpose(0, 2, 3, 1).reshape(n, h * w, c, 1)
    bits_ = ((pix >> np.arange(qw)) & 1).astype(np.uint8).reshape(n, h * w, c * qw)
    full = np.zeros((n, h * w, words * 32), dtype=np.uint8)
    full[..., : c * qw] = bits_
    packed = np.packbits(full, axis=-1, bitorder="little")
    return packed.view("<u4").reshape(n, h * w, words)


def unstream(out: np.ndarray, spec: dict) -> np.ndarray:
    """(N, words) in (y, x, channel) order to (N, C*H*W) in PyTorch's order."""
    o, h, w = spec["output"]["shape"]
    n = out.shape[0]
    return out.reshape(n, h, w, o).transpose(0, 3, 1, 2).reshape(n, -1)


def _vectors(graph: Graph, spec: dict) -> dict[str, object]:
    rng = np.random.default_rng(2026)
    inp = spec["input"]
    shape = (VECTORS, *graph.input.shape)
    if inp["kind"] == "codes":
        lo, hi = float(inp["qmin"]) * inp["scale"], float(inp["qmax"]) * inp["scale"]
        x = rng.uniform(lo - 0.1 * abs(lo) - inp["scale"], hi + 0.1 * abs(hi) + inp["scale"],
                        size=shape)  # fmt: skip
    else:
        x = rng.normal(size=shape)
    x = x.astype(np.float32)
    acc = interpreter.run(graph, x).reshape(VECTORS, -1)
    o, h, w = spec["output"]["shape"]
    acc_yxo = acc.reshape(VECTORS, o, h, w).transpose(0, 2, 3, 1).reshape(VECTORS, -1)
    words = stream_words(graph, x, spec)
    frames = [
        [sum(int(v) << (32 * k) for k, v in enumerate(px)) for px in frame] for frame in words
    ]
    return {"frames": frames, "expected": acc_yxo.tolist(), "interval": spec["cycles"]["interval"]}


def roms(name: str, e: Engine) -> list[tuple[str, tuple[str, ...]]]:
    """An engine's ROM files (``rtl/<stem>.hex``, one hex word per line, ``$readmemh``):
    the block-ROM weight rows of each lane and each threshold unit's coefficients."""
    if not isinstance(e, ConvEngine):
        return []
    found = [(f"{name}_e{e.index}_w{lane.index}", lane.block_rom) for lane in e.lanes if e.block]
    return found + [(f"{name}_e{e.index}_c{u.index}", u.rom) for u in e.thresholds]


def emit(
    graph: Graph,
    out_dir: Path,
    model_name: str,
    fps_target: float | None = None,
    clock_mhz: float | None = None,
    board: str | None = None,
    **_: object,
) -> FpgaView:
    the_board = boards.get(board) if board is not None else None
    view = lower(graph, verilog_ident(model_name), fps_target, clock_mhz)
    env = templates.environment("fpga")
    rtl = out_dir / "rtl"
    (rtl / "hw").mkdir(parents=True)
    (out_dir / "cocotb").mkdir()
    files = []
    for src in verilator.hw_sources():
        shutil.copyfile(src, rtl / "hw" / src.name)
        files.append(f"rtl/hw/{src.name}")
    engine = env.get_template("engine.v.j2")
    for e in view.engines:
        path = rtl / f"{view.name}_e{e.index}.v"
        path.write_text(engine.render(m=view, e=e), encoding="utf-8")
        files.append(f"rtl/{path.name}")
        for stem, words in roms(view.name, e):
            (rtl / f"{stem}.hex").write_text("\n".join(words) + "\n", encoding="utf-8")
    top = rtl / f"{view.name}_top.v"
    top.write_text(env.get_template("top.v.j2").render(m=view), encoding="utf-8")
    files.append(f"rtl/{top.name}")
    (out_dir / "files.f").write_text("\n".join(files) + "\n", encoding="utf-8")
    for name, template in TEMPLATES.items():
        text = env.get_template(template).render(m=view, files=files, board=the_board)
        (out_dir / name).write_text(text, encoding="utf-8")
    if the_board is not None:
        boards.emit(view, out_dir, the_board, files)
    spec = io_spec(view)
    if the_board is not None:
        spec["board"] = the_board.name
    (out_dir / "io.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    vectors = json.dumps(_vectors(graph, spec), separators=(",", ":")) + "\n"
    (out_dir / "cocotb" / "vectors.json").write_text(vectors, encoding="utf-8")
    return view
