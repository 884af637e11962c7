"""bnc's FPGA benchmark: FINN's CNV topology (dense: about half the weights at beta; sparse:
95 % at alpha) and the bundled example, each folded for 9,150 frames/s at 100 MHz.

    make bench-fpga        (or: .venv/bin/python bench/fpga.py [--fps 9150] [--out DIR])

For each design: compile time, the cycle model, the cycles per frame Verilator measures on a
batch of random frames, and yosys synth_xilinx's LUT / FF / BRAM / DSP counts. Prints one
markdown table. yosys takes several minutes per CNV design on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnc  # noqa: E402
from bench.cnv import cnv  # noqa: E402
from bnc.backends.fpga.toolchain import synthesize  # noqa: E402
from bnc.sim import fpga  # noqa: E402

FINN_CNV_LUTS = 26_072  # CNV-W1A1 on the PYNQ-Z1 (FINN's published figure), 9,150 frames/s


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def design(name: str, model, shape, fps: float, out: Path, reuse: bool) -> dict[str, object]:
    t0 = time.perf_counter()
    compiled = bnc.compile(model, input_shape=shape, target="fpga", fps_target=fps)
    folder = out / name
    if not (reuse and (folder / "bnc.json").is_file()):
        compiled.save(folder)
    seconds = time.perf_counter() - t0
    say(f"{name}: compiled in {seconds:.1f} s; simulating")
    from bnc.backends.fpga.lower import lower

    view = lower(compiled.lowered, "m", fps_target=fps)
    x = np.random.default_rng(0).uniform(0, 1, size=(8, *shape)).astype(np.float32)
    _, stats = fpga.run(folder, x)
    say(f"{name}: synthesizing with yosys")
    t1 = time.perf_counter()
    res = synthesize(folder, quiet=True)
    say(f"{name}: yosys took {time.perf_counter() - t1:.0f} s")
    alpha = 1 - sum(int(op.weight.sum()) for op in _convs(compiled)) / sum(
        int(op.weight.size) for op in _convs(compiled)
    )
    return {
        "name": name,
        "alpha": alpha,
        "compile_s": seconds,
        "model": view.interval,
        "measured": stats["cycles_per_sample"],
        "fps": 100e6 / stats["cycles_per_sample"],
        "res": res,
    }


def _convs(compiled):
    from bnc.ir import ops as O

    return [op for op in compiled.lowered.ops if isinstance(op, O.SumConv2d)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fps", type=float, default=9150.0)
    p.add_argument("--out", help="keep the designs here (default: a temporary folder)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --out: keep designs already there (and"
        " their cached yosys results) instead of recompiling them",
    )
    a = p.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="bnc-bench-fpga-") as tmp:
        out = Path(a.out) if a.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        example = torch.load(ROOT / "examples" / "fashion_bnn.pt", weights_only=False)
        rows = [
            design("cnv-dense", cnv(0.5), (3, 32, 32), a.fps, out, a.reuse),
            design("cnv-sparse", cnv(0.95), (3, 32, 32), a.fps, out, a.reuse),
            design("fashion-bundled", example, (1, 28, 28), a.fps, out, a.reuse),
        ]
    print(f"FPGA designs folded for {a.fps:,.0f} frames/s at 100 MHz (yosys synth_xilinx)\n")
    print("| design | alpha % | compile s | cycles/frame model | measured | frames/s | LUTs"
          " (logic + memory) | FFs | BRAM36 | DSP |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        res = r["res"]
        print(
            f"| {r['name']} | {100 * r['alpha']:.1f} | {r['compile_s']:.1f} | {r['model']:,}"
            f" | {r['measured']:,.0f} | {r['fps']:,.0f} | {res.luts:,} ({res.logic_luts:,} +"
            f" {res.lutram_luts:,}) | {res.ffs:,} | {res.bram36:g} | {res.dsps} |"
        )
    dense, sparse = rows[0]["res"].luts, rows[1]["res"].luts
    print(f"\nDense CNV: {dense:,} LUTs vs FINN's {FINN_CNV_LUTS:,} ({dense / FINN_CNV_LUTS:.2f}x);"
          f" sparse / dense LUTs: {sparse / dense:.2f} (target <= 0.35)")  # fmt: skip


if __name__ == "__main__":
    main()
