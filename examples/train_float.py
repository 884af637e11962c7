"""Train an ordinary float CNN on FashionMNIST, a model for `bnc quantize` (float -> low-bit).

    python examples/train_float.py --epochs 4 --out examples/fashion_float.pt
    python examples/train_float.py --residual --epochs 4 --out examples/fashion_float_resnet.pt

Two networks, both plain float32 PyTorch (no ``bnc.nn`` layer, no quantizer):

* the default, an ``nn.Sequential`` of ``torch.nn`` classes with the topology of the bundled
  chain (``w2a2()`` in ``train_multibit.py``): conv 64, 64, maxpool, conv 128, 128, maxpool,
  FC 256, FC 10; 3x3 convs with padding 1 and no bias, each conv and the first FC followed by
  BatchNorm and ReLU, the last layer an ``nn.Linear`` with bias (the logits);
* ``--residual``, a small ResNet written the way people write them: a ``BasicBlock`` module
  with its own ``forward``, ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``, one shared
  ``nn.ReLU(inplace=True)`` and a ``downsample`` shortcut (1x1 stride-2 conv and BatchNorm) in
  the one block that halves the size: stem conv 32 @ 28x28, block 32, block 64 / 2 (14x14),
  block 64, global average pool, ``nn.Linear`` 64 -> 10.

``--width`` multiplies every channel count (not the 10 classes). The input is a float32 batch
of shape (N, 1, 28, 28) with values in [0, 1] (pixel / 255); the output is 10 logits. Note:
``examples/fashion_test.npz`` holds ``images``, uint8 (2000, 1, 28, 28) in 0..255 (the first
2,000 test images), and ``labels``, int64 (2000,); the model takes those images as
``torch.from_numpy(images).float() / 255``, not the raw bytes.

The recipe is that of the other examples, whose helpers it imports (``train_fashion.py``:
data, accuracy, progress bar; ``train_resnet.py``: parser, batches, BatchNorm recalibration):
Adam with OneCycle, horizontal flips, bfloat16 autocast where the CPU has it (the weights stay
float32), and every BatchNorm's statistics re-estimated on ``--recal`` training images at the
end. One torch thread by default (``--threads``). Prints one line per epoch and writes the
eval-mode module with ``torch.save(model)`` and a ``.json`` of its numbers next to it; the
``--residual`` file's classes are ``train_float.BasicBlock`` and ``train_float.ResNet``, so
``torch.load`` needs this folder on ``sys.path``. Bad arguments print one line on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
tf = importlib.import_module("train_fashion")  # DATA, accuracy, Progress
tr = importlib.import_module("train_resnet")  # Parser, check_paths, setup, batches, recalibrate_

PROG = "train_float"
NPZ = HERE / "fashion_test.npz"
INPUT_SHAPE = (1, 28, 28)


def channels(c: int, width: float) -> int:
    return max(1, round(c * width))


def chain(width: float = 1.0, classes: int = 10) -> nn.Sequential:
    """The bundled chain's topology in float: conv 64, 64, pool, 128, 128, pool, FC 256, 10."""
    a, b, c, d, fc = (channels(n, width) for n in (64, 64, 128, 128, 256))

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *conv(1, a),
        *conv(a, b),
        nn.MaxPool2d(2),
        *conv(b, c),
        *conv(c, d),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(d * 7 * 7, fc, bias=False),
        nn.BatchNorm1d(fc),
        nn.ReLU(),
        nn.Linear(fc, classes),
    )


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, as in torchvision."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem conv 32, block 32, block 64 / 2, block 64, global average pool, linear 10."""

    def __init__(self, width: float = 1.0, classes: int = 10) -> None:
        super().__init__()
        a, b = channels(32, width), channels(64, width)
        self.conv1 = nn.Conv2d(1, a, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(a)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(a, a)
        self.layer2 = nn.Sequential(BasicBlock(a, b, stride=2), BasicBlock(b, b))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(b, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = tr.Parser(
        prog=PROG,
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--residual", action="store_true",
                   help="train the small ResNet instead of the chain")  # fmt: skip
    p.add_argument("--width", type=float, default=1.0, help="channel-count multiplier")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--recal", type=int, default=20000,
                   help="training images that re-estimate BatchNorm statistics at the end"
                   " (0: keep the running averages)")  # fmt: skip
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--fp32", action="store_true", help="train in float32 (default: bfloat16)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=tf.DATA)
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    p.add_argument("--out", type=Path,
                   help="model file (default examples/fashion_float.pt, with --residual"
                   " examples/fashion_float_resnet.pt)")  # fmt: skip
    a = p.parse_args(argv)
    if a.out is None:
        a.out = HERE / ("fashion_float_resnet.pt" if a.residual else "fashion_float.pt")
    for ok, message in (
        (0.0 < a.width <= 8.0, f"--width must be in (0, 8], not {a.width}"),
        (a.epochs >= 1, f"--epochs must be positive, not {a.epochs}"),
        (a.batch >= 1, f"--batch must be positive, not {a.batch}"),
        (a.lr > 0.0, f"--lr must be positive, not {a.lr}"),
        (a.threads >= 0, f"--threads must be 0 (all cores) or positive, not {a.threads}"),
        (0 <= a.recal <= 60000, f"--recal must be from 0 to 60000 images, not {a.recal}"),
        (a.out.suffix == ".pt", f"--out {a.out}: the model file must end in .pt"),
    ):
        if not ok:
            p.error(message)
    tr.check_paths(p, a.data_dir, a.out, "--out")
    return a


def npz_accuracy(model: nn.Module) -> float | None:
    """Accuracy on ``examples/fashion_test.npz``, its uint8 images fed as ``/ 255`` floats."""
    if not NPZ.is_file():
        return None
    data = np.load(NPZ)
    x = torch.from_numpy(data["images"]).float() / 255
    return tf.accuracy(model, x, torch.from_numpy(data["labels"]).long())


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    xtr, ytr, xte, yte = tr.setup(a)
    bf16 = not a.fp32 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    start = time.time()
    model = ResNet(a.width) if a.residual else chain(a.width)
    name = "resnet" if a.residual else "chain"
    params = sum(p.numel() for p in model.parameters())
    per_epoch = (len(xtr) + a.batch - 1) // a.batch
    steps = per_epoch * a.epochs
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps,
                                                   pct_start=0.1)  # fmt: skip
    model = model.to(memory_format=torch.channels_last)
    print(f"{PROG}: float {name} (width {a.width}, {params} parameters), {a.epochs} epochs of"
          f" {per_epoch} steps (batch {a.batch}), {'bfloat16' if bf16 else 'float32'},"
          f" {torch.get_num_threads()} threads", flush=True)  # fmt: skip
    history = []
    for epoch in range(1, a.epochs + 1):
        t0 = time.time()
        model.train()
        seen = hits = 0
        loss_total = 0.0
        bar = tf.Progress(per_epoch, f"epoch {epoch}/{a.epochs}", a.progress)
        for step, idx in enumerate(tr.batches(len(xtr), a.batch), 1):
            xb, yb = xtr[idx], ytr[idx]
            if not a.no_flip:
                xb = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, xb.flip(3), xb)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(xb).float()
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_sched.step()
            loss_total += float(loss.detach()) * len(idx)
            hits += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(step, f"loss {loss_total / seen:.3f}")
        train_seconds = time.time() - t0
        test = tf.accuracy(model, xte, yte)
        history.append({"epoch": epoch, "test": test, "train": hits / seen,
                        "train_seconds": round(train_seconds, 1)})  # fmt: skip
        print(f"epoch {epoch}/{a.epochs} loss {loss_total / seen:.4f} train"
              f" {100 * hits / seen:.2f} % test {100 * test:.2f} % ({train_seconds:.0f} s of"
              f" training, {time.time() - start:.0f} s in all)", flush=True)  # fmt: skip
    model = model.to(memory_format=torch.contiguous_format).eval()
    before = tf.accuracy(model, xte, yte)
    if a.recal:
        tr.recalibrate_(model, xtr[torch.randperm(len(xtr))[: a.recal]])
    final = tf.accuracy(model, xte, yte)
    print(f"{PROG}: test accuracy {100 * before:.2f} % with the running BatchNorm statistics,"
          f" {100 * final:.2f} % after re-estimating them on {a.recal} training images",
          flush=True)  # fmt: skip
    partial = a.out.with_name(a.out.name + ".part")
    torch.save(model, partial)
    partial.replace(a.out)
    reloaded = torch.load(a.out, weights_only=False).eval()
    again = tf.accuracy(reloaded, xte, yte)
    if again != final:
        print(f"{PROG}: error: {a.out} reloaded gives {100 * again:.2f} %, not"
              f" {100 * final:.2f} %", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    on_npz = npz_accuracy(reloaded)
    seconds = round(time.time() - start, 1)
    info = {
        "model": "float ResNet (stem 32, block 32, block 64 / 2, block 64, avgpool, linear 10)"
        if a.residual
        else "float chain (conv 64, 64, maxpool, conv 128, 128, maxpool, FC 256, FC 10)",
        "width": a.width,
        "input": {
            "shape": list(INPUT_SHAPE),
            "dtype": "float32",
            "range": [0.0, 1.0],
            "from_fashion_test_npz": "images.astype(float32) / 255",
        },
        "test_accuracy": final,
        "test_accuracy_running_bn_stats": before,
        "test_accuracy_fashion_test_npz": on_npz,
        "bn_recalibration_images": a.recal,
        "parameters": params,
        "file_bytes": a.out.stat().st_size,
        "epochs": a.epochs,
        "seconds": seconds,
        "seconds_per_epoch": round(sum(h["train_seconds"] for h in history) / a.epochs, 1),
        "batch": a.batch,
        "lr": a.lr,
        "threads": torch.get_num_threads(),
        "bfloat16": bf16,
        "seed": a.seed,
        "history": history,
        "command": "python examples/train_float.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    npz_note = f", {100 * on_npz:.2f} % on {NPZ.name}" if on_npz is not None else ""
    print(f"{PROG}: wrote {a.out} ({info['file_bytes']} bytes): test accuracy"
          f" {100 * final:.2f} %{npz_note}, {seconds:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    # Run as the module ``train_float``, not ``__main__``: the pickled ResNet's classes must be
    # importable by name when the file is loaded elsewhere.
    importlib.import_module(PROG).main()
