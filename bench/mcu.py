"""bnc's microcontroller benchmark: the bundled FashionMNIST example and FINN's TFC topology
(784 → 64 → 64 → 64 → 10, binary weights and activations, binarized input; dense: half the
weights at beta, sparse: 95 % at alpha), for Cortex-M4 and Cortex-M7, every schedule (auto,
dense, sparse, sliced; sliced falls back where a layer is not stride-1 over bits, and is
forced onto fully connected layers, which auto never gives it). Then the bundled model's
layers on Cortex-M4 under each schedule, and its target (issue 16: at most 17 M instructions).

    make bench-mcu        (or: .venv/bin/python bench/mcu.py [--samples 20])

For each case: the library object's flash (text + data of ``model.o``, arm-none-eabi-size),
its SRAM (bss: the arena), the constants' bytes, the fp32 parameters' bytes, and the median
instructions per inference that qemu-system-arm counts (``-icount``) over random inputs.
Prints one markdown table.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnc  # noqa: E402
import bnc.nn as bn  # noqa: E402
from bnc.backends.mcu.toolchain import MCU_TARGETS, build, size  # noqa: E402
from bnc.report import fp32_bytes  # noqa: E402

TFC = (64, 64, 64, 10)
FLASH_TARGET = 16 * 1024  # TFC's model.o, bytes
M4_TARGET = 17_000_000  # the bundled model's instructions per inference on Cortex-M4 (issue 16)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tfc(alpha_share: float, seed: int = 0) -> nn.Sequential:
    """FINN's TFC-W1A1 with ``bnc.nn`` layers: random weights at ``alpha_share`` of alpha,
    random batch norms (their values do not change the size or the instruction count)."""
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = [bn.Sign(), nn.Flatten()]
    c = 28 * 28
    for i, o in enumerate(TFC):
        fc = bn.BinaryLinear(c, o)
        with torch.no_grad():
            b = rng.random(tuple(fc.weight.shape)) >= alpha_share
            fc.weight.copy_(torch.from_numpy(np.where(b, 0.5, -0.5)))
        norm = nn.BatchNorm1d(o)
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, size=o)))
            norm.bias.copy_(torch.from_numpy(rng.normal(scale=0.5, size=o)))
            norm.running_mean.copy_(torch.from_numpy(rng.normal(scale=3.0, size=o)))
            norm.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 3.0, size=o)))
        layers += [fc, norm] + ([bn.Sign()] if i < len(TFC) - 1 else [])
        c = o
    return nn.Sequential(*layers).eval()


def case(name, compiled, target, schedule, x, out: Path) -> dict[str, object]:
    compiled = bnc.compile(compiled, input_shape=x.shape[1:], target=target, schedule=schedule)
    folder = compiled.save(out / f"{name}-{target}-{schedule}")
    build(folder)
    lib = size(folder / "build" / "model.o")
    view = compiled.view  # the view model save() emitted
    _, stats = compiled.run_acc(x)
    say(f"{name} {target} {schedule}: {stats['instructions_per_sample']:,.0f} instructions")
    return {
        "model": name,
        "target": target,
        "schedule": schedule,
        "flash": lib.flash,
        "sram": lib.data + lib.bss,
        "consts": view.weight_bytes,
        "fp32": fp32_bytes(compiled.graph),
        "arena": view.arena.size,
        "per_tensor": view.arena.per_tensor,
        "insns": stats["instructions_per_sample"],
        "macs": sum(r.macs for r in compiled.layers()),
        "layers": stats["layer_instructions_per_sample"],
        "schedules": {v.name: v.schedule for v in view.layers},
    }


def bundled_rows(samples: int, out: Path) -> list[str]:
    """The bundled model on Cortex-M4 under auto: each layer's schedule, the estimate
    (``bnc.backends.mcu.lower.cost``) and the measured instructions, and the 17 M target."""
    from bnc.backends.core import ConvStep
    from bnc.backends.mcu import lower as mcu_lowering
    from bnc.ir.passes.narrow import NarrowThresholds

    data = np.load(ROOT / "examples" / "fashion_test.npz")
    x = (data["images"][:samples].astype(np.float32) / np.float32(255.0)).astype(np.float32)
    r = case("fashion (bundled)", ROOT / "examples" / "fashion_bnn.pt", "cortex-m4", "auto", x, out)
    graph = bnc.compile(ROOT / "examples" / "fashion_bnn.pt", target="cortex-m4").lowered
    sched = mcu_lowering.code_planes(NarrowThresholds().apply(graph), "auto")
    steps = {re.sub(r"\W", "_", s.name): s for s in sched.steps if isinstance(s, ConvStep)}
    lines = ["| layer | schedule | estimate | measured |", "| --- | --- | --- | --- |"]
    for layer, n in r["layers"].items():
        how = next((v for k, v in r["schedules"].items() if re.sub(r"\W", "_", k) == layer), "")
        est = f"{mcu_lowering.cost(steps[layer], 'auto'):,.0f}" if layer in steps else "—"
        lines.append(f"| {layer} | {how} | {est} | {n:,.0f} |")
    auto = r["insns"]
    lines += ["", f"Whole inference: {auto:,.0f} instructions (target <= {M4_TARGET:,}:"
              f" {'met' if auto <= M4_TARGET else 'missed'}); model.o {r['flash']:,} B flash,"
              f" {r['sram']:,} B SRAM."]  # fmt: skip
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--out", help="keep the compiled folders here")
    a = p.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bnc-bench-mcu-"))
    rng = np.random.default_rng(0)
    data = np.load(ROOT / "examples" / "fashion_test.npz")
    fashion_x = (data["images"][: a.samples].astype(np.float32) / np.float32(255.0)).astype(
        np.float32
    )
    mnist_like = rng.uniform(-1, 1, size=(a.samples, 1, 28, 28)).astype(np.float32)
    models = [
        ("fashion (bundled)", ROOT / "examples" / "fashion_bnn.pt", fashion_x),
        ("TFC dense", tfc(0.5), mnist_like),
        ("TFC sparse 95%", tfc(0.95), mnist_like),
    ]
    rows = []
    for name, model, x in models:
        for target in MCU_TARGETS:
            for schedule in ("auto", "dense", "sparse", "sliced"):
                rows.append(case(name, model, target, schedule, x, out))
    print("| model | core | schedule | model.o flash (B) | SRAM (B) | constants (B) | fp32 (B)"
          " | fp32 / constants | arena (B) / per-tensor (B) | instructions per inference"
          " | instructions per MAC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['target']} | {r['schedule']} | {r['flash']:,} | {r['sram']:,}"
            f" | {r['consts']:,} | {r['fp32']:,} | {r['fp32'] / r['consts']:.1f}x"
            f" | {r['arena']:,} / {r['per_tensor']:,} | {r['insns']:,.0f}"
            f" | {r['insns'] / r['macs']:.3f} |"
        )
    bundled = {r["schedule"]: r for r in rows if r["model"] == "fashion (bundled)"
               and r["target"] == "cortex-m4"}  # fmt: skip
    print("\nThe bundled model on cortex-m4, instructions per inference by layer:\n")
    print("| layer | " + " | ".join(bundled) + " |")
    print("|---|" + "---|" * len(bundled))
    for layer in bundled["auto"]["layers"]:
        cells = []
        for r in bundled.values():
            how = next((v for k, v in r["schedules"].items() if re.sub(r"\W", "_", k) == layer), "")
            cells.append(f"{r['layers'][layer]:,.0f} ({how})")
        print(f"| {layer} | " + " | ".join(cells) + " |")
    auto = bundled["auto"]["insns"]
    print(f"\nBundled model, cortex-m4, auto: {auto:,.0f} instructions per inference (target <="
          f" {M4_TARGET:,}: {'met' if auto <= M4_TARGET else 'missed'}).")  # fmt: skip
    tfc_flash = max(
        r["flash"]
        for r in rows
        if str(r["model"]).startswith("TFC") and r["schedule"] != "sliced"  # (FC: never picked)
    )
    print(f"\nTFC model.o flash, largest case: {tfc_flash:,} B (target <= {FLASH_TARGET:,} B:"
          f" {'met' if tfc_flash <= FLASH_TARGET else 'missed'}).")  # fmt: skip
    say(f"folders in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
