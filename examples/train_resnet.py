"""Train a small binary ResNet on FashionMNIST at a chosen sparsity and save a model bnc compiles.

    python examples/train_resnet.py --ec 0.05 --out examples/fashion_resnet.pt

The network (28x28 input, GDQ weights per output channel everywhere):

* stem: 8-bit input, binary conv 1->32 (3x3), BatchNorm, Sign (32 @ 28x28);
* identity block 32: ``Sign(conv3x3(x) -> BN + x)``: the shortcut carries the input's +-1 bits;
* two-branch block to 64 @ 14x14: ``Sign(BN(conv3x3 / 2)(x) + BN(conv1x1 / 2)(x))``;
* identity block 64, two-branch block to 128 @ 7x7, identity block 128;
* global average pool, binary linear 128->10, BatchNorm1d.

It is built from ``nn.Sequential`` and ``bnc.nn.Residual`` only, so the ``torch.save`` file is
a plain module tree that loads with ``torch.load(..., weights_only=True)`` under an allow-list
of torch.nn and bnc.nn classes. The recipe is the one of ``train_fashion.py`` (dense first,
then ``bnc.nn.SparsitySchedule`` down to ``--ec`` over all binary weights, the first conv and
the classifier free but counted; flips, bfloat16 autocast, channels-last, OneCycle), and the
data loading, progress bar, accuracy and kernel-class helpers are imported from it. Two
additions:

* ``--teacher`` (optional) distils from a trained model, for example the chain model
  ``examples/fashion_bnn.pt``: its logits for the training images are computed once (the
  unflipped ones serve the flipped copies too) and mixed into the loss;
* ``--recal`` training images (default 20000) re-estimate every BatchNorm's statistics after
  the last step, weights fixed, in float32 as deployed: the running averages taken during
  training lag behind the weights, and a Sign after each BatchNorm makes the lag cost accuracy.

Prints one line per epoch on stdout (test accuracy, share of beta per binary layer, zero /
one-hot kernel shares of the constrained layers) and writes the model and a ``.json`` with its
numbers next to it. Bad arguments print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

import bnc.nn as bn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
tf = importlib.import_module("train_fashion")  # load, Progress, accuracy, kernel_classes

PROG = "train_resnet"

# Every class in a saved model: the allow-list for torch.load(..., weights_only=True).
ALLOWED = [
    nn.Sequential, nn.BatchNorm1d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Flatten,
    nn.Identity, bn.InputQuantizer, bn.Sign, bn.BinaryConv2d, bn.BinaryLinear, bn.GDQ,
    bn.Residual,
]  # fmt: skip


def load_safe(path: Path, extra: tuple[type, ...] = ()) -> nn.Module:
    """``torch.load`` with ``weights_only=True``: only ``ALLOWED`` (and ``extra``) classes."""
    with torch.serialization.safe_globals([*ALLOWED, *extra]):
        return torch.load(path, weights_only=True)


def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """Binary conv (``k`` x ``k``, same padding) followed by its BatchNorm."""
    conv = bn.BinaryConv2d(cin, cout, k, stride=stride, padding=k // 2, per_channel=True)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


def identity_block(c: int) -> nn.Sequential:
    """``Sign(BN(conv(x)) + x)`` for ``x`` in +-1: an identity shortcut of bits."""
    return nn.Sequential(bn.Residual(conv_bn(c, c, 3)), bn.Sign())


def down_block(cin: int, cout: int) -> nn.Sequential:
    """Halves the size: ``Sign(BN(conv3x3 / 2)(x) + BN(conv1x1 / 2)(x))``."""
    return nn.Sequential(
        bn.Residual(conv_bn(cin, cout, 3, stride=2), shortcut=conv_bn(cin, cout, 1, stride=2)),
        bn.Sign(),
    )


def build_model(widths: tuple[int, int, int] = (32, 64, 128), classes: int = 10) -> nn.Sequential:
    a, b, c = widths
    return nn.Sequential(
        bn.InputQuantizer(bits=8, scale=1 / 255, input_shape=(1, 28, 28)),
        bn.BinaryConv2d(1, a, 3, padding=1, per_channel=True),
        nn.BatchNorm2d(a),
        bn.Sign(),
        identity_block(a),
        down_block(a, b),
        identity_block(b),
        down_block(b, c),
        identity_block(c),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        bn.BinaryLinear(c, classes, per_channel=True),
        nn.BatchNorm1d(classes),
    )


def layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the binary layers, in the order of ``bn.binary_layers``."""
    binary = {id(m) for m in bn.binary_layers(model)}
    return [name for name, m in model.named_modules() if id(m) in binary]


def layer_rows(model: nn.Module) -> list[dict[str, object]]:
    """Per binary layer: name, weights, alpha / beta shares and kernel classes."""
    rows = []
    for name, m, kc in zip(
        layer_names(model), bn.binary_layers(model), tf.kernel_classes(model), strict=True
    ):
        rows.append({"name": name, "weights": m.weight.numel(), "alpha": 1.0 - kc["beta"], **kc})
    return rows


class Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line on stderr (no usage block) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog=PROG,
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ec", type=float, default=0.05,
                   help="share of all binary weights allowed at beta (default 0.05: 95 %% at"
                   " alpha; 0.5 or more trains the dense twin)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--begin", type=float, default=0.1, help="share of steps trained dense")
    p.add_argument("--end", type=float, default=0.6, help="share of steps when EC is reached")
    p.add_argument("--teacher", type=Path, help="distil from this trained model")
    p.add_argument("--kd-weight", type=float, default=0.5, help="share of the distillation loss")
    p.add_argument("--kd-temp", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--recal", type=int, default=20000,
                   help="training images that re-estimate BatchNorm statistics at the end"
                   " (0: keep the running averages)")  # fmt: skip
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--fp32", action="store_true", help="train in float32 (default: bfloat16)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=tf.DATA)
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    p.add_argument("--out", type=Path, default=Path("examples") / "fashion_resnet.pt")
    a = p.parse_args(argv)
    checks = [
        (0.0 < a.ec <= 1.0, f"--ec must be a share in (0, 1], not {a.ec}"),
        (a.epochs >= 1, f"--epochs must be positive, not {a.epochs}"),
        (a.batch >= 1, f"--batch must be positive, not {a.batch}"),
        (a.lr > 0.0, f"--lr must be positive, not {a.lr}"),
        (a.threads >= 0, f"--threads must be 0 (all cores) or positive, not {a.threads}"),
        (
            0.0 <= a.begin <= a.end <= 1.0,
            f"--begin and --end must satisfy 0 <= begin <= end <= 1, not {a.begin}, {a.end}",
        ),
        (0.0 <= a.kd_weight <= 1.0, f"--kd-weight must be a share in [0, 1], not {a.kd_weight}"),
        (a.kd_temp > 0.0, f"--kd-temp must be positive, not {a.kd_temp}"),
        (0 <= a.recal <= 60000, f"--recal must be from 0 to 60000 images, not {a.recal}"),
        (a.teacher is None or a.teacher.is_file(), f"--teacher {a.teacher}: no such file"),
        (a.out.suffix == ".pt", f"--out {a.out}: the model file must end in .pt"),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    check_paths(p, a.data_dir, a.out, "--out")
    return a


def check_paths(p: argparse.ArgumentParser, data_dir: Path, out: Path, flag: str) -> None:
    """Before any training: the dataset's files are there and ``out``'s folder is writable."""
    missing = [n for n in tf.FILES if not (data_dir / n).is_file()]
    if missing:
        p.error(f"--data-dir {data_dir}: missing {', '.join(missing)} (Debian package"
                " dataset-fashion-mnist)")  # fmt: skip
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"{flag} {out}: cannot create its folder: {e.strerror or e}")
    if not os.access(out.parent, os.W_OK):
        p.error(f"{flag} {out}: folder {out.parent} is not writable")


def batches(n: int, size: int) -> list[torch.Tensor]:
    """A random permutation of ``range(n)`` cut into batches of ``size``."""
    return list(torch.randperm(n).split(size))


def teacher_logits(path: Path, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The teacher's logits (float32) for every image of ``x``, computed once."""
    try:
        teacher = load_safe(path, extra=(nn.MaxPool2d,)).eval()
    except Exception as e:  # any failure to load it is the file's
        print(f"{PROG}: error: --teacher {path}: cannot load it: {str(e).splitlines()[0]}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return torch.cat([teacher(chunk).float() for chunk in x.split(1000)])


@torch.no_grad()
def recalibrate_(model: nn.Module, x: torch.Tensor, batch: int = 500) -> None:
    """Replace every BatchNorm's running statistics by their average over ``x`` (float32)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for chunk in x.split(batch):
        model(chunk)
    for m in norms:
        m.momentum = 0.1
    model.eval()


def setup(a: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """Seed and threads from the arguments; the images in [0, 1] and labels, as
    ``(x_train, y_train, x_test, y_test)``."""
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    images = tf.load(a.data_dir)
    xtr, xte = (torch.from_numpy(v.astype("float32")[:, None] / 255.0) for v in images[0::2])
    ytr, yte = (torch.from_numpy(v.astype("int64")) for v in images[1::2])
    return xtr, ytr, xte, yte


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    xtr, ytr, xte, yte = setup(a)
    use_bf16 = not a.fp32 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

    start = time.time()
    soft = teacher_logits(a.teacher, xtr, use_bf16) if a.teacher is not None else None
    if soft is not None:
        teacher_acc = float((soft.argmax(1) == ytr).float().mean())
        print(f"{PROG}: teacher {a.teacher}: train accuracy {100 * teacher_acc:.2f} %"
              f" ({time.time() - start:.0f} s)", flush=True)  # fmt: skip

    model = build_model()
    binary = bn.binary_layers(model)
    free = [binary[0], binary[-1]]  # the 8-bit-input conv and the classifier: free, but counted
    per_epoch = (len(xtr) + a.batch - 1) // a.batch
    steps = per_epoch * a.epochs
    schedule = None
    if a.ec < 0.5:
        schedule = bn.SparsitySchedule(
            model, target=a.ec, total_steps=steps, start=0.5, begin=a.begin, end=a.end,
            exclude=free, per_layer=True, count_excluded=True,
        )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=a.lr, total_steps=steps, pct_start=0.1
    )
    model = model.to(memory_format=torch.channels_last)
    n_binary = sum(m.weight.numel() for m in binary)
    print(
        f"{PROG}: binary ResNet, {n_binary} binary weights in {len(binary)} layers,"
        f" EC {a.ec} ({100 * (1 - a.ec):.0f} % at alpha), {a.epochs} epochs of {per_epoch}"
        f" steps (batch {a.batch}), {'bfloat16' if use_bf16 else 'float32'},"
        f" {torch.get_num_threads()} threads"
        + (f", teacher {a.teacher}" if soft is not None else ""),
        flush=True,
    )

    history: list[dict[str, object]] = []
    for epoch in range(1, a.epochs + 1):
        model.train()
        seen = hits = 0
        loss_total = 0.0
        bar = tf.Progress(per_epoch, f"epoch {epoch}/{a.epochs}", a.progress)
        for step, idx in enumerate(batches(len(xtr), a.batch), 1):
            xb, yb = xtr[idx], ytr[idx]
            if not a.no_flip:
                mirror = torch.rand(len(idx), 1, 1, 1) < 0.5
                xb = torch.where(mirror, xb.flip(3), xb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(xb).float()
            loss = F.cross_entropy(logits, yb)
            if soft is not None:  # KL(teacher || student) at temperature T, scaled by T^2
                t = a.kd_temp
                log_p = F.log_softmax(logits / t, dim=1)
                log_q = F.log_softmax(soft[idx] / t, dim=1)
                kd = (log_q.exp() * (log_q - log_p)).sum(1).mean() * t * t
                loss = torch.lerp(loss, kd, a.kd_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_sched.step()
            bn.clamp_latent_(model)
            allowed = schedule.step() if schedule is not None else 1.0
            loss_total += float(loss.detach()) * len(idx)
            hits += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(step, f"loss {loss_total / seen:.3f} EC now {allowed:.3f}")
        test = tf.accuracy(model, xte, yte)
        rows = tf.kernel_classes(model)
        history.append({"epoch": epoch, "test": test, "train": hits / seen, "layers": rows})
        betas = " ".join(f"{r['beta']:.3f}" for r in rows)
        kinds = " ".join(f"{r['zero']:.2f}/{r['one_hot']:.2f}" for r in rows[1:-1])
        alpha = 100 * (1 - bn.beta_share(model))
        print(
            f"epoch {epoch}/{a.epochs} loss {loss_total / seen:.4f} train {100 * hits / seen:.2f} %"
            f" test {100 * test:.2f} % alpha {alpha:.2f} % | beta per layer {betas}"
            f" | zero/one-hot kernels {kinds} ({time.time() - start:.0f} s)",
            flush=True,
        )

    model = model.to(memory_format=torch.contiguous_format).eval()
    before = tf.accuracy(model, xte, yte)
    if a.recal:
        recalibrate_(model, xtr[torch.randperm(len(xtr))[: a.recal]])
    final = tf.accuracy(model, xte, yte)  # the saved layout; the reload must give the same
    print(f"{PROG}: test accuracy {100 * before:.2f} % with the running BatchNorm statistics,"
          f" {100 * final:.2f} % after re-estimating them on {a.recal} training images"
          f" ({time.time() - start:.0f} s)", flush=True)  # fmt: skip
    partial = a.out.with_name(a.out.name + ".part")
    torch.save(model, partial)
    partial.replace(a.out)
    seconds = round(time.time() - start, 1)
    info = {
        "model": "binary ResNet (stem 32, identity 32, down 64, identity 64, down 128,"
        " identity 128, avgpool, linear 10)",
        "ec": a.ec,
        "test_accuracy": final,
        "test_accuracy_running_bn_stats": before,
        "bn_recalibration_images": a.recal,
        "teacher": str(a.teacher) if a.teacher is not None else None,
        "kd_weight": a.kd_weight if a.teacher is not None else None,
        "kd_temp": a.kd_temp if a.teacher is not None else None,
        "alpha_share": 1.0 - bn.beta_share(model),
        "alpha_share_constrained": 1.0 - bn.beta_share(model, exclude=free),
        "binary_weights": n_binary,
        "layers": layer_rows(model),
        "epochs": a.epochs,
        "batch": a.batch,
        "lr": a.lr,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "bfloat16": use_bf16,
        "seed": a.seed,
        "history": history,
        "command": "python examples/train_resnet.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"{PROG}: wrote {a.out}: test accuracy {100 * final:.2f} %,"
        f" {100 * info['alpha_share']:.2f} % of binary weights at alpha, {seconds:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
