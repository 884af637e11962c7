"""bnc's speed benchmark: one table from one run on this machine, single thread, batch 1.

    make bench            (or: .venv/bin/python bench/run.py)

Prints markdown: the register-resident popcount peak of this CPU, four 3x3 layers
(PyTorch fp32 vs bnc dense binary and GDQ at 50/90/95/99 % alpha weights), one 28x28x128
layer in the multi-bit forms (W1A1, ternary at 50 / 90 % zeros, W2A2, W1A4), the cost model's
predictions beside measured times for layers in both schedules on each x86 path this CPU runs
(bench/layers.py; a wrong ranking fails the bench), the bundled example, the residual example
and FINN's CNV against their fp32 twins with 1 and 2 threads and each of their layers
(bench/models.py), the static NEON figures (clang + llvm-mca, Cortex-A72), and the bundled
model's instructions per inference on Cortex-M4 by layer, estimated and measured (bench/mcu.py).
Rates are binary MACs per second counted densely (C*9 per output), so a sparse layer's rate is
its effective rate. Times are medians; this machine is shared and noisy.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import multibit  # noqa: E402
from bench.common import PROFILE, build_host, conv_graph, time_artifact  # noqa: E402
from bench.layers import rows as layer_rows  # noqa: E402
from bench.mcu import bundled_rows as mcu_rows  # noqa: E402
from bench.models import rows as model_rows  # noqa: E402
from bench.multibit import rows as multibit_rows  # noqa: E402
from bnc.backends.c.emit import emit  # noqa: E402
from bnc.backends.c.toolchain import ARM64  # noqa: E402

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]
SHARES = [0.5, 0.9, 0.95, 0.99]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak(tmp: Path) -> dict[str, float]:
    exe = tmp / "peak"
    src = ROOT / "bench" / "peak.c"
    subprocess.run(["cc", "-O3", "-march=native", "-o", str(exe), str(src)], check=True)
    runs = [
        json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "sink"}


def torch_conv(c: int, h: int) -> float:
    x, w = torch.randn(1, c, h, h), torch.randn(c, c, 3, 3)
    for _ in range(3):
        F.conv2d(x, w, padding=1)
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        F.conv2d(x, w, padding=1)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def layers(tmp: Path, top: float) -> list[str]:
    head = "| layer | PyTorch fp32 | bnc dense | × PyTorch | % of peak |"
    head += "".join(f" GDQ {int(s * 100)} % α |" for s in SHARES)
    rows = [head, "|" + " --- |" * (5 + len(SHARES))]
    for c, h in SHAPES:
        say(f"bench: layer {h}x{h}x{c} -> {c}")
        macs = h * h * c * c * 9
        x = np.random.default_rng(0).normal(size=(10, c, h, h)).astype(np.float32)
        t_torch = torch_conv(c, h)
        # dense binary: symmetric weights (+-a), half the bits set, best schedule
        dense = build_host(conv_graph(c, h, c, 0.5, symmetric=True), tmp / f"d{c}", "auto", PROFILE)
        t_dense = time_artifact(dense, x, 5, layer=0)
        cells = []
        for share in SHARES:
            f = build_host(conv_graph(c, h, c, share), tmp / f"g{c}-{share}", "auto", PROFILE)
            t = time_artifact(f, x, 5, layer=0)
            cells.append(f" {macs / t / 1e9:.0f} G ({t_dense / t:.1f}× dense) |")
        rows.append(
            f"| {h}²×{c}→{c} | {macs / t_torch / 1e9:.1f} G | {macs / t_dense / 1e9:.0f} G |"
            f" {t_torch / t_dense:.1f}× | {100 * macs / t_dense / top:.0f} % |" + "".join(cells)
        )
    return rows


def _mca(tmp: Path, schedule: str, region: str) -> tuple[int, float]:
    """Instructions and cycles per iteration of one marked inner loop as emitted for arm64."""
    folder = tmp / f"neon-{schedule}"
    folder.mkdir()
    emit(conv_graph(64, 56, 64, 0.5), folder, "m", ARM64, schedule)
    asm = folder / "model.s"
    subprocess.run(
        ["clang", "--target=aarch64-linux-gnu", "-O3", "-mcpu=cortex-a72", "-DBNC_MCA", "-S",
         "-o", str(asm), str(folder / "model.c")],
        check=True,
    )  # fmt: skip
    body, inside, n = [], False, 0
    for line in asm.read_text().splitlines():
        if f"LLVM-MCA-BEGIN {region}" in line:
            inside, n = True, n + 1
        elif f"LLVM-MCA-END {region}" in line:
            inside = False
            if n == 1:
                break
        elif inside and "APP" not in line:
            body.append(line)
    loop = folder / "loop.s"
    loop.write_text("\n".join(body) + "\n")
    out = subprocess.run(
        ["llvm-mca", "-mtriple=aarch64-linux-gnu", "-mcpu=cortex-a72", "-iterations=1000",
         str(loop)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    cycles = int(next(v for v in out.splitlines() if v.startswith("Total Cycles")).split()[-1])
    return len(body), cycles / 1000


def neon(tmp: Path) -> list[str]:
    """The generic and the planar inner loops as emitted for arm64, one iteration each between
    the BNC_MCA marks, under llvm-mca (Cortex-A72)."""
    say("bench: NEON inner loops under llvm-mca (cortex-a72)")
    rows = [
        "| NEON inner loop (arm64) | instructions | cycles / iteration |"
        " binary MACs / cycle (dense) | at 95 % α (effective) |",
        "| --- | --- | --- | --- | --- |",
    ]
    n, per = _mca(tmp, "generic", "popdot")
    macs = 16 * 32  # one window word against 16 output channels
    # dense: the generic loop does not skip zero weights, so 95 % α is the same work
    rows.append(
        f"| generic: dup + 4 × (load, and, cnt, add) | {n} | {per:.2f} | {macs / per:.0f} |"
        f" {macs / per:.0f} |"
    )
    n, per = _mca(tmp, "planar", "planar")
    macs = 4 * 16 * 8  # 4 vectors x 16 positions x 8 channels per byte entry
    # at 95 % alpha the share of nonzero weight bytes is 1 - 0.95^8
    eff = macs / per / (1 - 0.95**8)
    rows.append(
        f"| planar: 4 × (and, cnt, add) + address, mask | {n} | {per:.2f} |"
        f" {macs / per:.0f} | {eff:.0f} |"
    )
    return rows


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bnc-bench-") as d:
        tmp = Path(d)
        say("bench: register-resident popcount peak")
        pk = peak(tmp)
        top = max(v for k, v in pk.items() if k.startswith("xor_popcnt"))
        lines = [
            "### Peak (register-resident, one thread)",
            "",
            "| loop | binary MAC/s |",
            "| --- | --- |",
        ]
        lines += [f"| {k} | {v / 1e9:.0f} G |" for k, v in pk.items()]
        lines += [
            "",
            f"Peak used below: {top / 1e9:.0f} G (best XOR + popcount loop).",
            "",
            "### 3×3 layers, stride 1, pad 1 (binary MAC/s, dense count)",
            "",
        ]
        lines += layers(tmp, top)
        say("bench: multi-bit forms of one 28x28x128 layer")
        lines += ["", "### Multi-bit forms (DESIGN §2.5–2.7), one layer, batch 1", ""]
        lines += multibit_rows(tmp, torch_conv(multibit.C, multibit.H))
        say("bench: the layers in both schedules, predicted and measured")
        table, wrong = layer_rows(tmp)
        lines += ["", "### Cost model: layers in both schedules, predicted / measured", ""]
        lines += table
        whole, per_layer = model_rows(tmp, top)
        lines += ["", "### Whole models, batch 1 (runs alternating, medians)", ""] + whole
        lines += ["", "### Each model's layers, one thread", ""] + per_layer
        lines += ["", "### ARM, static (clang -O3 -mcpu=cortex-a72, llvm-mca)", ""] + neon(tmp)
        say("bench: the bundled model on Cortex-M4 (qemu-system-arm -icount)")
        lines += ["", "### Cortex-M4, the bundled model (instructions per inference)", ""]
        lines += mcu_rows(4, tmp)
    if wrong:
        lines += ["", f"**Wrong rankings**: {'; '.join(wrong)}"]
    print("\n".join(lines))
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
