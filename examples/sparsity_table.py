"""Accuracy against sparsity for the example network: train, compile, run, tabulate.

    python examples/sparsity_table.py                 # make sparsity-table
    python examples/sparsity_table.py --ec 0.05 0.02  # some rows only

For each EC (the share of binary weights allowed at beta) it trains the example network with
``examples/train_fashion.py`` (skipped when ``DIR/ecEC.pt`` exists, unless ``--retrain``),
compiles it with ``bnc compile`` for the host C target, runs the 10,000 FashionMNIST test
images through ``bnc run``, and prints a Markdown table with PyTorch's accuracy next to the
compiled model's on the same images, the share of weights at alpha, the kernel classes and
the host time per image. The EC 0.5 row is the dense binary twin; with ``--teacher-dense``
the sparse rows distil from it. The table is also written to ``DIR/table.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import bnc.nn as bn
from bnc.ir.analysis import KernelInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_fashion  # noqa: E402


def evaluate(
    model: nn.Module, model_path: Path, x: np.ndarray, labels: np.ndarray, folder: Path
) -> dict[str, float]:
    """PyTorch's (``model``) and the compiled model's (from ``model_path``) accuracy on ``x``,
    and bnc run's time per image."""
    with torch.no_grad():
        ref = torch.cat([model(torch.from_numpy(x[i : i + 1000])) for i in range(0, len(x), 1000)])
    np.save(folder / "x.npy", x)
    bnc = [sys.executable, "-m", "bnc"]
    subprocess.run(bnc + ["compile", str(model_path), "-o", str(folder / "c"), "--target", "c"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(bnc + ["run", str(folder / "c"), "--input", str(folder / "x.npy"), "--output",
                          str(folder / "y.npy"), "--stats", str(folder / "stats.json")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    y = np.load(folder / "y.npy")
    stats = json.loads((folder / "stats.json").read_text())
    pred_c, pred_t = y.argmax(1), ref.numpy().argmax(1)
    return {
        "torch": float((pred_t == labels).mean()),
        "compiled": float((pred_c == labels).mean()),
        "agree": float((pred_c == pred_t).mean()),
        "us_per_image": 1e6 * float(stats["seconds_per_sample"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ec", type=float, nargs="+", default=[0.5, 0.10, 0.05, 0.02])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--dir", type=Path, default=Path("build") / "sparsity")
    p.add_argument("--retrain", action="store_true", help="train even when the model exists")
    p.add_argument("--teacher-dense", action="store_true",
                   help="sparse rows distil from the EC 0.5 model (trained first)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=train_fashion.DATA)
    a = p.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    _, _, xte, yte = train_fashion.load(a.data_dir)
    x = (xte[:, None].astype(np.float32) / np.float32(255.0)).astype(np.float32)
    labels = yte.astype(np.int64)
    dense = a.dir / "ec0.5.pt"
    ecs = sorted(set(a.ec), reverse=True)
    if a.teacher_dense and 0.5 not in ecs:
        ecs.insert(0, 0.5)
    rows = []
    for ec in ecs:
        path = a.dir / f"ec{ec:g}.pt"
        if a.retrain or not path.exists():
            args = ["--ec", str(ec), "--epochs", str(a.epochs), "--out", str(path),
                    "--data-dir", str(a.data_dir)]  # fmt: skip
            if a.teacher_dense and ec < 0.5:
                args += ["--teacher", str(dense)]
            train_fashion.main(args)
        info = json.loads(path.with_suffix(".json").read_text())
        folder = a.dir / f"ec{ec:g}"
        folder.mkdir(exist_ok=True)
        t0 = time.time()
        model = torch.load(path, weights_only=False).eval()
        res = evaluate(model, path, x, labels, folder)
        print(f"sparsity_table: EC {ec:g}: PyTorch {100 * res['torch']:.2f} %, compiled"
              f" {100 * res['compiled']:.2f} %, arg-max agreement {100 * res['agree']:.2f} %"
              f" ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
        # kernels (3x3 taps of one input channel) of the constrained convolutions
        convs = [KernelInfo.of((m.weight.detach() > 0).numpy())
                 for m in bn.binary_layers(model)[1:-1] if m.weight.dim() == 4]  # fmt: skip
        kernels = sum(k.kernels for k in convs)
        zero = sum(k.zero for k in convs) / kernels
        one_hot = sum(k.one_hot for k in convs) / kernels
        rows.append((ec, info, res, zero, one_hot))

    lines = [
        "| EC | weights at alpha (all / counted) | PyTorch accuracy | `bnc run` accuracy |"
        " zero / one-hot 3×3 kernels | host time per image | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for ec, info, res, zero, one_hot in rows:
        lines.append(
            f"| {ec:g}{' (dense twin)' if ec >= 0.5 else ''} | {100 * info['alpha_share']:.2f} % /"
            f" {100 * info['alpha_share_counted']:.2f} % | {100 * res['torch']:.2f} % |"
            f" {100 * res['compiled']:.2f} % | {100 * zero:.0f} % / {100 * one_hot:.0f} % |"
            f" {res['us_per_image']:.0f} µs |"
            f" {info['epochs']} epochs, {info['seconds'] / 60:.0f} min |"
        )
    text = "\n".join(lines) + "\n"
    (a.dir / "table.md").write_text(text)
    print(text)
    if any(res["torch"] != res["compiled"] or res["agree"] < 1 for _, _, res, _, _ in rows):
        print("sparsity_table: the compiled accuracy differs from PyTorch's", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
