"""bnc's FPGA benchmark against FINN's published CNV-W1A1 build.

    make bench-fpga        (or: .venv/bin/python bench/fpga.py [--only NAME ...] [--out DIR])

Designs: FINN's CNV topology (``bench/cnv.py``, random weights: dense = half at beta,
sparse = 95 % at alpha) folded for FINN's 32,768 cycles per frame, the dense CNV at 9,150
frames/s at 100 MHz, FINN's TFC-W1A1 topology (``bench/mcu.tfc``) at the same 32,768 cycles,
the bundled example at its default fold, and FINN's CNV-W1A2 and CNV-W2A2 (Brevitas'
``bnn_pynq`` models with random weights, through QONNX) at 32,768 cycles. For each: compile
time, the cycle model, the cycles per frame Verilator measures on a batch of random frames
(equal to the model's, and the outputs equal the interpreter's), and yosys 0.70
``synth_xilinx -abc9`` LUT / FF / BRAM / DSP counts. Two designs synthesize at a time;
yosys takes a few minutes per CNV design here. Then the dense CNV for the ULX3S-85F board
through yosys ``synth_ecp5``, nextpnr-ecp5 and ecppack (``--board ulx3s-85f``): its Fmax at
100 MHz and the ECP5 cells it uses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnc  # noqa: E402
from bench.cnv import cnv  # noqa: E402
from bench.mcu import tfc  # noqa: E402
from bnc.backends.fpga.lower import lower  # noqa: E402
from bnc.backends.fpga.toolchain import Resources, place_and_route, synthesize  # noqa: E402
from bnc.ir import interpreter  # noqa: E402
from bnc.ir import ops as O  # noqa: E402
from bnc.sim import fpga  # noqa: E402

FINN_CYCLES = 32_768  # FINN CNV-W1A1's slowest layers, cycles per frame
FINN_CNV = {"luts": 26_072, "ffs": 41_312, "bram36": 124, "dsps": 24}  # PYNQ-Z1, Vivado
DESIGNS = {
    "cnv-dense": (lambda: cnv(0.5), (3, 32, 32), 100e6 / FINN_CYCLES),
    "cnv-sparse": (lambda: cnv(0.95), (3, 32, 32), 100e6 / FINN_CYCLES),
    "cnv-dense-9150": (lambda: cnv(0.5), (3, 32, 32), 9150.0),
    "tfc-dense": (lambda: tfc(0.5), (1, 28, 28), 100e6 / FINN_CYCLES),
    "fashion-bundled": (None, (1, 28, 28), None),
    "cnv-w1a2-qonnx": ("cnv_1w2a", (3, 32, 32), 100e6 / FINN_CYCLES),
    "cnv-w2a2-qonnx": ("cnv_2w2a", (3, 32, 32), 100e6 / FINN_CYCLES),
}


def finn_qonnx(name: str, folder: Path) -> Path:
    """FINN's ``bnn_pynq`` model ``name`` with seeded random weights, exported by Brevitas to
    QONNX (``tests/qonnxgen.py``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import qonnxgen

    folder.mkdir(parents=True, exist_ok=True)
    module = qonnxgen.finn_model(name, 5)
    return qonnxgen.export(module, qonnxgen.input_shape(name), folder / f"{name}.onnx")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(name: str, out: Path, reuse: bool, board: str | None = None) -> dict[str, object]:
    make, shape, fps = DESIGNS[name]
    if make is None:
        import torch

        model = torch.load(ROOT / "examples" / "fashion_bnn.pt", weights_only=False)
    elif isinstance(make, str):
        model = finn_qonnx(make, out / "qonnx")
    else:
        model = make()
    t0 = time.perf_counter()
    compiled = bnc.compile(model, input_shape=shape, target="fpga", fps_target=fps, board=board)
    folder = out / (name if board is None else f"{name}-{board}")
    if not (reuse and (folder / "bnc.json").is_file()):
        compiled.save(folder)
    seconds = time.perf_counter() - t0
    view = lower(compiled.lowered, "m", fps_target=fps)
    x = np.random.default_rng(0).uniform(0, 1, size=(8, *shape)).astype(np.float32)
    say(f"{name}: compiled in {seconds:.1f} s; simulating 8 frames")
    got, stats = fpga.run(folder, x)
    want = interpreter.run(compiled.lowered, x).reshape(len(x), -1)
    convs = [op for op in compiled.lowered.ops if isinstance(op, O.SumConv2d)]
    alpha = 1 - sum(int(op.weight.sum()) for op in convs) / sum(op.weight.size for op in convs)
    return {
        "name": name,
        "folder": folder,
        "alpha": alpha,
        "compile_s": seconds,
        "model": view.interval,
        "measured": stats["cycles_per_sample"],
        "exact": bool(np.array_equal(got, want)),
    }


def synth(row: dict[str, object]) -> None:
    t1 = time.perf_counter()
    say(f"{row['name']}: synthesizing with yosys")
    row["res"] = synthesize(row["folder"], quiet=True)  # type: ignore[arg-type]
    row["yosys_s"] = time.perf_counter() - t1
    say(f"{row['name']}: yosys took {row['yosys_s']:.0f} s")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(DESIGNS), help="build only these")
    p.add_argument("--out", help="keep the designs here (default: a temporary folder)")
    p.add_argument("--no-board", action="store_true", help="skip the ECP5 place and route")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --out: keep designs already there (and their cached yosys results)",
    )
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bnc-bench-fpga-") as tmp:
        out = Path(a.out) if a.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = [build(name, out, a.reuse) for name in (a.only or DESIGNS)]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(synth, rows))
        placed = None
        if not a.no_board and "cnv-dense" in (a.only or DESIGNS):
            board = build("cnv-dense", out, a.reuse, "ulx3s-85f")
            say("cnv-dense for ulx3s-85f: synth_ecp5, nextpnr-ecp5, ecppack")
            placed = place_and_route(board["folder"])  # type: ignore[arg-type]
    print("FPGA designs, 100 MHz (yosys 0.70 synth_xilinx -abc9, 7-series cells)\n")
    print("| design | alpha % | compile s | cycles/frame model | measured | frames/s"
          " | equal to the interpreter | LUTs (logic + memory) | FFs | BRAM36 | DSP48"
          " | yosys s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        res: Resources = r["res"]  # type: ignore[assignment]
        print(
            f"| {r['name']} | {100 * r['alpha']:.1f} | {r['compile_s']:.1f} | {r['model']:,}"
            f" | {r['measured']:,.0f} | {100e6 / r['measured']:,.0f} | {r['exact']}"
            f" | {res.luts:,} ({res.logic_luts:,} + {res.lutram_luts:,}) | {res.ffs:,}"
            f" | {res.bram36:g} | {res.dsps} | {r['yosys_s']:.0f} |"
        )
    by = {r["name"]: r["res"] for r in rows}
    f = FINN_CNV
    print(f"\nFINN CNV-W1A1 (PYNQ-Z1, Vivado 2018.2, {FINN_CYCLES:,} cycles/frame):"
          f" {f['luts']:,} LUTs, {f['ffs']:,} FFs, {f['bram36']} BRAM36,"
          f" {f['dsps']} DSP48\n")  # fmt: skip
    if "cnv-dense" in by:
        d = by["cnv-dense"]
        print(f"- dense CNV at {FINN_CYCLES:,} cycles/frame <= 13,000 LUTs and <= 24 DSPs:"
              f" {d.luts:,} LUTs ({d.luts / f['luts']:.2f}x FINN's), {d.dsps} DSPs:"
              f" {verdict(d.luts <= 13_000 and d.dsps <= 24)}")  # fmt: skip
        if "cnv-sparse" in by:
            s = by["cnv-sparse"]
            share = s.luts / d.luts
            print(f"- sparse CNV <= 35 % of the dense LUTs at the same cycles/frame:"
                  f" {100 * share:.0f} %: {verdict(share <= 0.35)}")  # fmt: skip
    if "cnv-dense-9150" in by:
        h = by["cnv-dense-9150"]
        print(f"- dense CNV at 9,150 frames/s <= 26,000 LUTs: {h.luts:,}:"
              f" {verdict(h.luts <= 26_000)}")  # fmt: skip
    if placed is not None:
        used = ", ".join(f"{k} {u:,} / {n:,}" for k, (u, n) in sorted(placed.utilization.items())
                         if u)  # fmt: skip
        print(f"- dense CNV on the ECP5-85F (ulx3s-85f) at >= 100 MHz after nextpnr: Fmax"
              f" {placed.achieved_mhz:.1f} MHz: {verdict(placed.met)}; {used}")  # fmt: skip


if __name__ == "__main__":
    main()
