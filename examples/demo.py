"""`make demo`: compile the bundled FashionMNIST model to C, run it on the bundled test
images, and compare with the PyTorch model on the same images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MODEL = HERE / "fashion_bnn.pt"
DATA = HERE / "fashion_test.npz"
BUILD = HERE.parent / "build" / "demo"


def bnc(*args: str) -> None:
    cmd = [sys.executable, "-m", "bnc", *args]
    print("$ bnc " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    data = np.load(DATA)
    x = (data["images"].astype(np.float32) / np.float32(255.0)).astype(np.float32)
    labels = data["labels"].astype(np.int64)
    np.save(BUILD / "x.npy", x)
    np.save(BUILD / "labels.npy", labels)

    bnc("inspect", str(MODEL))
    out = BUILD / "fashion_bnn-c"
    bnc("compile", str(MODEL), "--target", "c", "-o", str(out))
    bnc(
        "run",
        str(out),
        "--input",
        str(BUILD / "x.npy"),
        "--output",
        str(BUILD / "y.npy"),
        "--stats",
        str(BUILD / "stats.json"),
        "--labels",
        str(BUILD / "labels.npy"),
    )

    y = np.load(BUILD / "y.npy")
    stats = json.loads((BUILD / "stats.json").read_text())
    model = torch.load(MODEL, weights_only=False)
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    acc_c = 100.0 * float((y.argmax(1) == labels).mean())
    acc_t = 100.0 * float((ref.argmax(1) == labels).mean())
    agree = 100.0 * float((y.argmax(1) == ref.argmax(1)).mean())
    print()
    print(f"images:                    {len(labels)} FashionMNIST test images (bundled)")
    print(f"PyTorch model accuracy:    {acc_t:.2f} %")
    print(f"compiled C accuracy:       {acc_c:.2f} %")
    print(f"arg-max agreement:         {agree:.2f} %")
    print(f"time per image (C, host):  {stats['seconds_per_sample'] * 1e6:.1f} us")
    if acc_c != acc_t:
        sys.exit("demo: the compiled model's accuracy differs from PyTorch's")


if __name__ == "__main__":
    main()
