"""Train the example network on FashionMNIST at a chosen sparsity and save a model bnc compiles.

    python examples/train_fashion.py --ec 0.05 --out build/fashion-ec0.05.pt

The network is a binary CNN (conv 64, 64, pool, 128, 128, pool, FC 256, 10) with GDQ weights
per output channel. The recipe (README "Sparse training"):

* the network trains dense (half its weights at beta) for the first ``--begin`` of the steps;
* ``bnc.nn.SparsitySchedule`` then lowers the share of beta weights to ``--ec`` on a cubic
  schedule ending at ``--end`` of the steps, by moving the latent weights, and holds it there
  while the learning rate decays (OneCycle, cosine) to zero;
* the first layer (8-bit input) and the classifier (0.2 % of the weights) are left free, as in
  the paper, but their beta weights count: ``--ec`` bounds the share over all binary weights;
* ``--teacher`` adds distillation from a trained model (the dense twin) to the loss.

Reads the idx files of the Debian package dataset-fashion-mnist. Prints a progress bar on
stderr and one line per epoch: test accuracy, share of beta per layer and kernel classes.
Writes the model (``torch.save`` of the module) and a ``.json`` with its numbers next to it.
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
from bnc.ir.analysis import KernelInfo

DATA = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir: Path) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels) as uint8 arrays."""
    missing = [n for n in FILES if not (data_dir / n).is_file()]
    if missing:
        print(
            f"train_fashion: {data_dir}: missing {', '.join(missing)}; install the Debian"
            " package dataset-fashion-mnist or pass --data-dir",
            file=sys.stderr,
        )
        sys.exit(2)
    return tuple(read_idx(data_dir / n) for n in FILES)


def build_model(
    widths: tuple[int, int, int, int] = (64, 64, 128, 128), fc: int = 256
) -> nn.Sequential:
    a, b, c, d = widths

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            bn.BinaryConv2d(cin, cout, 3, padding=1, per_channel=True),
            nn.BatchNorm2d(cout),
            bn.Sign(),
        ]

    return nn.Sequential(
        bn.InputQuantizer(bits=8, scale=1 / 255, input_shape=(1, 28, 28)),
        *block(1, a),
        *block(a, b),
        nn.MaxPool2d(2),
        *block(b, c),
        *block(c, d),
        nn.MaxPool2d(2),
        nn.Flatten(),
        bn.BinaryLinear(d * 7 * 7, fc, per_channel=True),
        nn.BatchNorm1d(fc),
        bn.Sign(),
        bn.BinaryLinear(fc, 10, per_channel=True),
        nn.BatchNorm1d(10),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == y).float().mean())


def kernel_classes(model: nn.Module) -> list[dict[str, float]]:
    """Per binary layer: share of beta weights and of zero / one-hot / other kernels."""
    rows = []
    for m in bn.binary_layers(model):
        k = KernelInfo.of((m.weight.detach() > 0).numpy())
        rows.append(
            {
                "beta": k.beta_share,
                "zero": k.zero / k.kernels,
                "one_hot": k.one_hot / k.kernels,
                "dense": k.dense / k.kernels,
            }
        )
    return rows


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal or ``force``)."""

    def __init__(self, total: int, label: str, force: bool = False) -> None:
        self.total, self.label = total, label
        self.on = force or sys.stderr.isatty()
        self.t0 = time.time()

    def update(self, done: int, extra: str = "") -> None:
        if not self.on or (done % 10 and done != self.total):
            return
        frac = done / self.total
        bar = "#" * int(30 * frac)
        eta = (time.time() - self.t0) * (1 - frac) / max(frac, 1e-9)
        print(f"\r{self.label} [{bar:<30}] {done}/{self.total} {extra} eta {eta:.0f} s ",
              end="", file=sys.stderr, flush=True)  # fmt: skip
        if done == self.total:
            print(file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ec", type=float, default=0.05,
                   help="share of all binary weights allowed at beta (default 0.05, that is"
                   " 95 %% at alpha; 0.5 or more leaves the network dense)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--begin", type=float, default=0.1, help="share of steps trained dense")
    p.add_argument("--end", type=float, default=0.6, help="share of steps when EC is reached")
    p.add_argument("--global-count", action="store_true",
                   help="one share over all counted layers instead of one per layer")  # fmt: skip
    p.add_argument("--ends-uncounted", action="store_true",
                   help="EC bounds the constrained layers only; the free first and last layers'"
                   " beta weights do not count (the paper's count)")  # fmt: skip
    p.add_argument("--teacher", type=Path, help="distil from this trained model")
    p.add_argument("--kd-weight", type=float, default=0.5)
    p.add_argument("--kd-temp", type=float, default=2.0)
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--fp32", action="store_true",
                   help="train in float32 (default: bfloat16 where the CPU has it)")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    p.add_argument("--out", type=Path, default=Path("build") / "fashion.pt")
    a = p.parse_args(argv)
    if not 0.0 < a.ec <= 1.0:
        p.error(f"--ec must be a share in (0, 1], not {a.ec}")
    if a.epochs < 1:
        p.error(f"--epochs must be positive, not {a.epochs}")
    if not 0.0 <= a.begin <= a.end <= 1.0:
        p.error(f"--begin and --end must satisfy 0 <= begin <= end <= 1, not {a.begin}, {a.end}")
    if a.teacher is not None and not a.teacher.is_file():
        p.error(f"--teacher {a.teacher}: no such file (train the dense twin with --ec 0.5 first)")

    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    xtr, ytr, xte, yte = load(a.data_dir)
    to_x = lambda v: torch.from_numpy(v.astype(np.float32)[:, None] / 255.0)  # noqa: E731
    xtr_t, xte_t = to_x(xtr), to_x(xte)
    ytr_t, yte_t = torch.from_numpy(ytr.astype(np.int64)), torch.from_numpy(yte.astype(np.int64))
    teacher = None
    if a.teacher is not None:
        teacher = torch.load(a.teacher, weights_only=False).eval()
    bf16 = (
        not a.fp32
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )

    soft = None
    if teacher is not None:  # the teacher is fixed: its logits for every image (and mirror), once
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            soft = [
                torch.cat([teacher(v[i : i + 1000]).float() for i in range(0, len(v), 1000)])
                for v in (xtr_t, xtr_t.flip(3))
            ]

    model = build_model()
    layers = bn.binary_layers(model)
    ends = [layers[0], layers[-1]]
    per_step = (len(xtr_t) + a.batch - 1) // a.batch
    steps = a.epochs * per_step
    sched_w = None
    if a.ec < 0.5:  # at 0.5 or above the network trains dense: the dense binary twin
        sched_w = bn.SparsitySchedule(
            model, target=a.ec, total_steps=steps, start=0.5, begin=a.begin, end=a.end,
            exclude=ends, per_layer=not a.global_count, count_excluded=not a.ends_uncounted,
        )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
    model = model.to(memory_format=torch.channels_last)
    print(f"train_fashion: EC {a.ec} ({100 * (1 - a.ec):.0f} % at alpha), {a.epochs} epochs,"
          f" {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} threads"
          + (f", teacher {a.teacher}" if teacher else ""), flush=True)  # fmt: skip
    t0 = time.time()
    history = []
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr_t))
        total = correct = 0
        loss_sum = 0.0
        bar = Progress(per_step, f"epoch {epoch + 1}/{a.epochs}", a.progress)
        for i, s in enumerate(range(0, len(perm), a.batch)):
            idx = perm[s : s + a.batch]
            xb, yb = xtr_t[idx], ytr_t[idx]
            flip = (
                torch.rand(len(idx)) < 0.5
                if not a.no_flip
                else torch.zeros(len(idx), dtype=torch.bool)
            )
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(xb).float()
                loss = F.cross_entropy(out, yb)
                if soft is not None:
                    ref = torch.where(flip[:, None], soft[1][idx], soft[0][idx])
                    t = a.kd_temp
                    kd = F.kl_div(F.log_softmax(out / t, 1), F.log_softmax(ref / t, 1),
                                  reduction="batchmean", log_target=True) * t**2  # fmt: skip
                    loss = (1 - a.kd_weight) * loss + a.kd_weight * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bn.clamp_latent_(model)
            share = sched_w.step() if sched_w else 1.0
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            total += len(idx)
            bar.update(i + 1, f"loss {loss_sum / total:.3f} EC now {share:.3f}")
        acc = accuracy(model, xte_t, yte_t)
        kc = kernel_classes(model)
        history.append({"epoch": epoch + 1, "test": acc, "layers": kc})
        betas = " ".join(f"{r['beta']:.3f}" for r in kc)
        classes = " ".join(f"{r['zero']:.2f}/{r['one_hot']:.2f}" for r in kc[1:-1])
        print(
            f"epoch {epoch + 1}/{a.epochs} loss {loss_sum / total:.4f}"
            f" train {100 * correct / total:.2f} %"
            f" test {100 * acc:.2f} % alpha {100 * (1 - bn.beta_share(model)):.2f} %"
            f" | beta per layer {betas} | zero/one-hot kernels {classes}"
            f" ({time.time() - t0:.0f} s)",
            flush=True,
        )

    model = model.to(memory_format=torch.contiguous_format).eval()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".part")
    torch.save(model, tmp)
    tmp.replace(a.out)
    reloaded = torch.load(a.out, weights_only=False)
    ends = [bn.binary_layers(reloaded)[0], bn.binary_layers(reloaded)[-1]]
    info = {
        "ec": a.ec,
        "test_accuracy": accuracy(reloaded, xte_t, yte_t),
        "alpha_share": 1.0 - bn.beta_share(reloaded),
        "alpha_share_counted": 1.0 - bn.beta_share(reloaded, exclude=ends),
        "layers": kernel_classes(reloaded),
        "epochs": a.epochs,
        "seconds": round(time.time() - t0, 1),
        "threads": torch.get_num_threads(),
        "bfloat16": bf16,
        "history": history,
        "command": "python examples/train_fashion.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"train_fashion: wrote {a.out}: test accuracy {100 * info['test_accuracy']:.2f} %,"
          f" {100 * info['alpha_share']:.2f} % of binary weights at alpha,"
          f" {info['seconds']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
