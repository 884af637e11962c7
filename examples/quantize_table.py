"""``bnc quantize`` on the float example, every way: accuracy, bytes, time, instructions.

    python examples/quantize_table.py                    # make quantize-table
    python examples/quantize_table.py --rows w4a4-int w2a2-amq --test 2000

The float model is ``examples/fashion_float.pt`` (``examples/train_float.py``: the bundled
network's topology with ReLU). Each row quantizes it with ``bnc.quantize`` on ``--calibration``
FashionMNIST training images (a fixed random draw; the ``-finetune`` rows also train
``--epochs`` passes over ``--finetune-images`` others, distilled from the float model),
writes ``DIR/ROW.pt``, compiles it for the host C target and runs the ``--test`` test images
through ``bnc run``, then compiles it for ``cortex-m4`` and counts the instructions of
``--m4-images`` inferences under qemu. Columns: weight and activation bits, the compiled weight
bytes (the masks, packed), the share of mask bits at 0 (the sparsity the compiler exploits),
PyTorch's accuracy and the compiled model's on the same images, their arg-max agreement, host
time per image and Cortex-M4 instructions per inference. The ``-prune50`` rows remove half of
each prunable layer's channels (``--prune 0.5``; with fine-tuning 20 % per step, ``--epochs``
per step); the ``budget-half-w2`` rows give ``--budget`` half the compiled weight bytes of
uniform 2-bit AMQ weights (measured in the run) and ``--weights 4`` as the widest.

A second table: the relative reconstruction error ``||W - Ŵ|| / ||W||`` over all the model's
layers together (``sqrt(sum ||W - Ŵ||² / sum ||W||²)``) of greedy, refined and alternating
(AMQ) binary planes, with and without ``|w|`` importance, at 1 to 4 bits, each method's own
reconstruction (greedy's and refined's planes as they found them). Both tables are printed and
written to ``DIR/table.md``; the run fails (exit 1) when the compiled model's arg-max agrees
with PyTorch's on fewer than 99.9 % of the images (DESIGN §2.2).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import bnc
from bnc.errors import BncError
from bnc.quantization import weights as W
from bnc.quantization.load import load_float
from bnc.report import layer_table, totals

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_fashion  # noqa: E402

ROWS: dict[str, dict[str, object]] = {
    "w4a4-int": {"weights": 4, "activations": 4, "method": "int"},
    "w4a4-amq": {"weights": 4, "activations": 4, "method": "amq"},
    "w2a4-ternary": {"weights": 2, "activations": 4, "method": "ternary"},
    "w2a2-amq": {"weights": 2, "activations": 2, "method": "amq"},
    "w2a2-amq-finetune": {"weights": 2, "activations": 2, "method": "amq", "finetune": True},
    "w2a2-int": {"weights": 2, "activations": 2, "method": "int"},
    "w1a8-amq": {"weights": 1, "activations": 8, "method": "amq"},
    "w1a2-amq": {"weights": 1, "activations": 2, "method": "amq"},
    "codebook16-a8": {"weights": 4, "activations": 8, "codebook": 16},
    "w4a4-int-prune50": {"weights": 4, "activations": 4, "method": "int", "prune": 0.5},
    "w4a4-int-prune50-finetune": {
        "weights": 4,
        "activations": 4,
        "method": "int",
        "prune": 0.5,
        "finetune": True,
    },  # fmt: skip
    "w2a2-amq-prune50-finetune": {
        "weights": 2,
        "activations": 2,
        "method": "amq",
        "prune": 0.5,
        "finetune": True,
    },  # fmt: skip
    # --budget: half the compiled weight bytes of uniform 2-bit AMQ weights, bits 1 to 4
    "budget-half-w2-a8": {"weights": 4, "activations": 8, "method": "amq", "budget": 0.5},
    "budget-half-w2-a2": {"weights": 4, "activations": 2, "method": "amq", "budget": 0.5},
}


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x[i : i + 500])).argmax(1)
                          for i in range(0, len(x), 500)]).numpy()  # fmt: skip


def bnc_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "bnc", *args], check=True, stdout=subprocess.DEVNULL)


def run_row(name: str, opts: dict[str, object], a: argparse.Namespace, data: dict) -> dict:
    t0 = time.time()
    path = a.dir / f"{name}.pt"
    opts = dict(opts)
    if "budget" in opts:
        if "w2_bytes" not in data:  # the uniform 2-bit model's compiled weight bytes
            w2 = bnc.quantize(a.float, torch.from_numpy(data["cal"]), weights=2)
            compiled = bnc.compile(w2.model, torch.from_numpy(data["cal"][:1]))
            data["w2_bytes"] = int(totals(layer_table(compiled.lowered))[
                "weight_bytes"])  # fmt: skip
        opts["budget"] = int(opts["budget"] * data["w2_bytes"])  # type: ignore[operator]
    if opts.pop("finetune", False):
        opts["finetune"] = (torch.from_numpy(data["tune_x"]), torch.from_numpy(data["tune_y"]))
        opts["epochs"] = a.epochs
    q = bnc.quantize(a.float, torch.from_numpy(data["cal"]), output=path, **opts)  # type: ignore
    row: dict[str, object] = {"name": name, **ROWS[name], "quantize_s": time.time() - t0}
    row["bits"] = [r.detail.split(",")[0].split()[-1] for r in q.layers if r.kind == "weights"]
    pred = predict(q.model, data["x"])
    row["torch"] = float((pred == data["y"]).mean())
    folder = a.dir / name
    folder.mkdir(exist_ok=True)
    bnc_cli("compile", str(path), "-o", str(folder / "c"))
    bnc_cli("run", str(folder / "c"), "--input", str(data["x_path"]), "--output",
            str(folder / "y.npy"), "--stats", str(folder / "c.json"))  # fmt: skip
    y = np.load(folder / "y.npy")
    row["compiled"] = float((y.argmax(1) == data["y"]).mean())
    row["agree"] = float((y.argmax(1) == pred).mean())
    row["us"] = 1e6 * json.loads((folder / "c.json").read_text())["seconds_per_sample"]
    compiled = bnc.compile(path, target="c")
    t = totals(layer_table(compiled.lowered))
    row["bytes"], row["zeros"] = int(t["weight_bytes"]), float(t["alpha_share"])
    try:
        bnc_cli("compile", str(path), "--target", "cortex-m4", "-o", str(folder / "m4"))
        bnc_cli("run", str(folder / "m4"), "--input", str(data["m4_path"]), "--stats",
                str(folder / "m4.json"))  # fmt: skip
        row["m4"] = json.loads((folder / "m4.json").read_text())["instructions_per_sample"]
    except subprocess.CalledProcessError:
        row["m4"] = None
    row["seconds"] = time.time() - t0
    return row


def reconstruction_table(model_path: Path, bits: range) -> list[str]:
    fg = load_float(model_path, (1, 28, 28))
    ws = [m.weight.detach() for m in fg.layers.values() if isinstance(m, nn.Conv2d | nn.Linear)]
    lines = ["| bits | greedy | refined | alternating (AMQ) | greedy, |w| | refined, |w| |"
             " alternating, |w| |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for b in bits:
        cells = []
        for importance in (None, "magnitude"):
            for method in ("greedy", "refined", "amq"):
                num = den = 0.0
                for w in ws:
                    approx = W.reconstruction(w, method, b, importance)
                    num += float(((approx - w) ** 2).sum())
                    den += float((w**2).sum())
                cells.append(f"{math.sqrt(num / den):.4f}")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--float", type=Path, default=HERE / "fashion_float.pt")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--calibration", type=int, default=1000, help="training images (default 1000)")
    p.add_argument("--test", type=int, default=10000, help="test images (default all 10,000)")
    p.add_argument("--m4-images", type=int, default=2)
    p.add_argument("--finetune-images", type=int, default=20000,
                   help="training images of the fine-tuned rows (default 20,000)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    p.add_argument("--dir", type=Path, default=Path("build") / "quantize")
    p.add_argument("--data-dir", type=Path, default=train_fashion.DATA)
    p.add_argument("--no-reconstruction", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.dir.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = train_fashion.load(a.data_dir)
    pick = np.random.default_rng(0).choice(len(xtr), a.calibration, replace=False)
    data = {
        "cal": xtr[pick][:, None].astype(np.float32) / np.float32(255),
        "x": xte[: a.test, None].astype(np.float32) / np.float32(255),
        "y": yte[: a.test].astype(np.int64),
    }
    tune = np.random.default_rng(1).choice(len(xtr), a.finetune_images, replace=False)
    data["tune_x"] = xtr[tune][:, None].astype(np.float32) / np.float32(255)
    data["tune_y"] = ytr[tune].astype(np.int64)
    data["x_path"], data["m4_path"] = a.dir / "x.npy", a.dir / "x_m4.npy"
    np.save(data["x_path"], data["x"])
    np.save(data["m4_path"], data["x"][: a.m4_images])
    float_model = torch.load(a.float, weights_only=False).eval()
    float_acc = float((predict(float_model, data["x"]) == data["y"]).mean())
    print(f"quantize_table: float model {a.float}: {100 * float_acc:.2f} % on {a.test} test"
          " images", flush=True)  # fmt: skip
    rows = []
    for name in a.rows:
        try:
            row = run_row(name, ROWS[name], a, data)
        except BncError as e:
            print(f"quantize_table: {name}: {e}", file=sys.stderr)
            continue
        rows.append(row)
        print(f"quantize_table: {name}: PyTorch {100 * row['torch']:.2f} %, compiled"
              f" {100 * row['compiled']:.2f} % ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    lines = [f"Float model: {100 * float_acc:.2f} % ({a.test} test images);"
             f" calibration: {a.calibration} training images.", "",
             "| row | W / A bits | weight bytes | mask bits at 0 | PyTorch accuracy | compiled"
             " accuracy | arg-max agreement | host time per image | Cortex-M4 instructions |"
             " quantize s |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        wbits = f"{r['codebook']} levels" if r.get("codebook") else r["weights"]
        if r.get("budget"):
            wbits = f"{' '.join(b.removesuffix('-bit') for b in r['bits'])} (≤ {wbits})"
        if r.get("prune"):
            wbits = f"{wbits}, {100 * r['prune']:g} % channels pruned"
        if r.get("finetune"):
            wbits = f"{wbits}, {a.epochs} epochs on {a.finetune_images:,} images"
        m4 = f"{r['m4']:,.0f}" if r["m4"] is not None else "failed"
        lines.append(
            f"| {r['name']} | {wbits} / {r['activations']} | {r['bytes']:,} |"
            f" {100 * r['zeros']:.1f} % | {100 * r['torch']:.2f} % | {100 * r['compiled']:.2f} % |"
            f" {100 * r['agree']:.2f} % | {r['us']:.0f} µs | {m4} | {r['quantize_s']:.0f} |"
        )
    if not a.no_reconstruction:
        lines += ["", *reconstruction_table(a.float, range(1, 5))]
    text = "\n".join(lines) + "\n"
    (a.dir / "table.md").write_text(text, encoding="utf-8")
    print(text)
    if any(r["agree"] < 0.999 for r in rows):
        print("quantize_table: a compiled model's arg-max agrees with PyTorch's on fewer than"
              " 99.9 % of the images", file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
