"""Train the bundled example: a GDQ binary CNN on FashionMNIST with the sparsity regularizer.

    python examples/train_fashion.py --epochs 8 --target 0.08 --out examples/fashion_bnn.pt

Reads the idx files of the Debian package dataset-fashion-mnist. The latent weights start
shifted so that about ``--init-beta`` of them are positive (at beta), and the regularizer keeps
the share of beta weights under ``--target`` (EC) from there; the published initialisation
barely moves the share in a few epochs (see issue notes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import bnc.nn as bn

DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir: Path) -> tuple[np.ndarray, ...]:
    names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    missing = [n for n in names if not (data_dir / n).is_file()]
    if missing:
        print(
            f"train_fashion: {data_dir}: missing {', '.join(missing)}; install the Debian"
            " package dataset-fashion-mnist or pass --data-dir",
            file=sys.stderr,
        )
        sys.exit(2)
    return tuple(read_idx(data_dir / n) for n in names)


def build_model() -> nn.Sequential:
    return nn.Sequential(
        bn.InputQuantizer(bits=8, scale=1 / 255, input_shape=(1, 28, 28)),
        bn.BinaryConv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        bn.Sign(),
        nn.MaxPool2d(2),
        bn.BinaryConv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        bn.Sign(),
        nn.MaxPool2d(2),
        bn.BinaryConv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        bn.Sign(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        bn.BinaryLinear(64 * 3 * 3, 128),
        nn.BatchNorm1d(128),
        bn.Sign(),
        bn.BinaryLinear(128, 10),
        nn.BatchNorm1d(10),
    )


def shift_latent_(layer: nn.Module, beta_share: float, spread: float) -> None:
    """Spread each layer's latent weights uniformly over ``[-spread, spread]`` and move them so
    that about ``beta_share`` of them are positive. A wide spread keeps Adam's steps from
    flipping bits at random; a small one lets the bits collapse to alpha."""
    with torch.no_grad():
        layer.weight.uniform_(-spread, spread)
        q = torch.quantile(layer.weight.flatten(), 1.0 - beta_share)
        layer.weight.sub_(q)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--target", type=float, default=0.08, help="EC: share of beta weights")
    p.add_argument("--gamma", type=float, default=0.07)
    p.add_argument("--init-beta", type=float, default=0.10)
    p.add_argument("--spread", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "fashion_bnn.pt")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    xtr, ytr, xte, yte = load(a.data_dir)
    to_x = lambda v: torch.from_numpy(v.astype(np.float32)[:, None] / 255.0)  # noqa: E731
    xtr_t, xte_t = to_x(xtr), to_x(xte)
    ytr_t, yte_t = torch.from_numpy(ytr.astype(np.int64)), torch.from_numpy(yte.astype(np.int64))

    model = build_model()
    layers = bn.binary_layers(model)
    ends = [layers[0], layers[-1]]  # 1 % of the weights; they keep half their weights at beta
    for layer in layers:
        shift_latent_(layer, 0.5 if layer in ends else a.init_beta, a.spread)
    reg = bn.SparsityRegularizer(model, target=a.target, gamma=a.gamma, exclude=ends)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    steps = a.epochs * ((len(xtr_t) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr_t))
        total = correct = 0
        loss_sum = 0.0
        for i in range(0, len(perm), a.batch):
            idx = perm[i : i + a.batch]
            xb, yb = xtr_t[idx], ytr_t[idx]
            out = model(xb)
            loss = reg(F.cross_entropy(out, yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bn.clamp_latent_(model)
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            total += len(idx)
        shares = [f"{(m.weight > 0).float().mean():.3f}" for m in bn.binary_layers(model)]
        print(
            f"epoch {epoch + 1}/{a.epochs} loss {loss_sum / total:.4f} "
            f"train {100 * correct / total:.2f} % test {100 * accuracy(model, xte_t, yte_t):.2f} %"
            f" beta share {bn.beta_share(model):.4f} per layer {' '.join(shares)}"
            f" ({time.time() - t0:.0f} s)",
            flush=True,
        )

    model.eval()
    torch.save(model, a.out)
    reloaded = torch.load(a.out, weights_only=False)
    acc_full = accuracy(reloaded, xte_t, yte_t)
    n = 2000
    np.savez_compressed(
        a.out.parent / "fashion_test.npz", images=xte[:n, None], labels=yte[:n].astype(np.int64)
    )
    info = {
        "test_accuracy_10000": acc_full,
        "test_accuracy_bundled_2000": accuracy(reloaded, xte_t[:n], yte_t[:n]),
        "beta_share": bn.beta_share(reloaded),
        "alpha_share": 1.0 - bn.beta_share(reloaded),
        "per_layer_beta_share": {
            name: float((m.weight > 0).float().mean())
            for name, m in reloaded.named_modules()
            if m in bn.binary_layers(reloaded)
        },
        "epochs": a.epochs,
        "seconds": round(time.time() - t0, 1),
        "command": "python examples/train_fashion.py " + " ".join(sys.argv[1:]),
    }
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
