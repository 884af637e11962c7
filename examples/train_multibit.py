"""Train a multi-bit network on FashionMNIST and save a model bnc compiles.

    python examples/train_multibit.py --model w2a2 --out examples/fashion_w2a2.pt
    python examples/train_multibit.py --model resnet8 --out examples/fashion_resnet8.pt

Two networks (28x28 input, 8-bit input quantizer):

* ``w2a2``: the bundled chain's topology (conv 64, 64, pool, 128, 128, pool, FC 256, 10) with
  2-bit integer weights (``quantizer="int", weight_bits=2``, per-channel scale) and 2-bit
  activations (``bnc.nn.ActQuantizer(2)`` after each BatchNorm); ``--weights ternary`` takes
  ternary weights instead (``--nonzero`` their share, held by ``SparsitySchedule``);
* ``resnet8``: a binary ResNet whose residual stream is 8-bit codes,
  ``x = q8(BN(conv(sign(x))) + x)`` (``ActQuantizer(8, signed=True)``), with two-branch
  downsampling blocks ``q8(BN(conv3x3/2(sign x)) + BN(conv1x1/2(sign x)))``, a global average
  pool of the stream and a binary classifier.

The recipe is that of ``train_fashion.py`` / ``train_resnet.py`` (Adam with OneCycle, flips,
bfloat16 autocast where the CPU has it, optional ``--teacher`` distillation), whose helpers it
imports; every BatchNorm's statistics are re-estimated on ``--recal`` training images at the
end. Prints one line per epoch and writes the model and a ``.json`` of its numbers. Bad
arguments print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import bnc.nn as bn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
tf = importlib.import_module("train_fashion")  # load, accuracy, Progress
tr = importlib.import_module("train_resnet")  # Parser, setup, batches, teacher_logits, recalibrate_

PROG = "train_multibit"


def w2a2(weights: str = "int", bits: int = 2) -> nn.Sequential:
    """The bundled chain with k-bit weights and activations."""
    wb = None if weights == "ternary" else bits

    def conv(cin: int, cout: int) -> list[nn.Module]:
        layer = bn.BinaryConv2d(cin, cout, 3, padding=1, quantizer=weights, weight_bits=wb)
        return [layer, nn.BatchNorm2d(cout), bn.ActQuantizer(bits)]

    return nn.Sequential(
        bn.InputQuantizer(bits=8, scale=1 / 255, input_shape=(1, 28, 28)),
        *conv(1, 64),
        *conv(64, 64),
        nn.MaxPool2d(2),
        *conv(64, 128),
        *conv(128, 128),
        nn.MaxPool2d(2),
        nn.Flatten(),
        bn.BinaryLinear(128 * 7 * 7, 256, quantizer=weights, weight_bits=wb),
        nn.BatchNorm1d(256),
        bn.ActQuantizer(bits),
        bn.BinaryLinear(256, 10, quantizer=weights, weight_bits=wb),
        nn.BatchNorm1d(10),
    )


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    conv = bn.BinaryConv2d(cin, cout, k, stride=stride, padding=k // 2, per_channel=True)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


def _stream() -> nn.Module:
    return bn.ActQuantizer(8, signed=True, scale=4.0 / 128)


def resnet8(widths: tuple[int, int, int] = (32, 64, 128), classes: int = 10) -> nn.Sequential:
    """A binary ResNet over an 8-bit residual stream."""
    a, b, c = widths

    def identity(ch: int) -> list[nn.Module]:
        body = nn.Sequential(bn.Sign(), _conv_bn(ch, ch, 3))
        return [bn.Residual(body), _stream()]

    def down(cin: int, cout: int) -> list[nn.Module]:
        two = bn.Residual(_conv_bn(cin, cout, 3, 2), shortcut=_conv_bn(cin, cout, 1, 2))
        return [bn.Sign(), two, _stream()]

    return nn.Sequential(
        bn.InputQuantizer(bits=8, scale=1 / 255, input_shape=(1, 28, 28)),
        bn.BinaryConv2d(1, a, 3, padding=1, per_channel=True),
        nn.BatchNorm2d(a),
        _stream(),
        *identity(a),
        *down(a, b),
        *identity(b),
        *down(b, c),
        *identity(c),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        bn.BinaryLinear(c, classes, per_channel=True),
        nn.BatchNorm1d(classes),
    )


def parse(argv: list[str] | None):
    p = tr.Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("w2a2", "resnet8"), default="w2a2")
    p.add_argument("--weights", choices=("int", "ternary"), default="int",
                   help="w2a2: 2-bit integer or ternary weights")  # fmt: skip
    p.add_argument("--nonzero", type=float, default=0.0,
                   help="ternary: the share of nonzero weights to reach (0: free)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--teacher", type=Path)
    p.add_argument("--kd-weight", type=float, default=0.5)
    p.add_argument("--kd-temp", type=float, default=2.0)
    p.add_argument("--recal", type=int, default=20000)
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=tf.DATA)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", type=Path, default=Path("build") / "fashion_multibit.pt")
    a = p.parse_args(argv)
    for ok, msg in (
        (a.epochs >= 1, f"--epochs must be positive, not {a.epochs}"),
        (0.0 <= a.nonzero < 1.0, f"--nonzero must be a share in [0, 1), not {a.nonzero}"),
        (a.nonzero == 0 or a.weights == "ternary", "--nonzero applies to --weights ternary"),
        (0 <= a.recal <= 60000, f"--recal must be from 0 to 60000 images, not {a.recal}"),
        (a.teacher is None or a.teacher.is_file(), f"--teacher {a.teacher}: no such file"),
    ):
        if not ok:
            p.error(msg)
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    xtr, ytr, xte, yte = tr.setup(a)
    bf16 = not a.fp32 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    start = time.time()
    soft = tr.teacher_logits(a.teacher, xtr, bf16) if a.teacher is not None else None
    model = w2a2(a.weights) if a.model == "w2a2" else resnet8()
    per_epoch = (len(xtr) + a.batch - 1) // a.batch
    steps = per_epoch * a.epochs
    schedule = None
    if a.nonzero:
        layers = bn.binary_layers(model)
        schedule = bn.SparsitySchedule(model, target=a.nonzero, total_steps=steps, start=0.5,
                                       exclude=[layers[0], layers[-1]])  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps,
                                                   pct_start=0.1)  # fmt: skip
    model = model.to(memory_format=torch.channels_last)
    what = f"{a.weights} weights" if a.model == "w2a2" else "GDQ weights, 8-bit stream"
    print(f"{PROG}: {a.model} ({what}), {a.epochs} epochs of {per_epoch} steps,"
          f" {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} threads"
          + (f", teacher {a.teacher}" if soft is not None else ""), flush=True)  # fmt: skip
    history = []
    for epoch in range(1, a.epochs + 1):
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
            if soft is not None:
                t = a.kd_temp
                log_p, log_q = F.log_softmax(logits / t, 1), F.log_softmax(soft[idx] / t, 1)
                loss = torch.lerp(loss, (log_q.exp() * (log_q - log_p)).sum(1).mean() * t * t,
                                  a.kd_weight)  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_sched.step()
            bn.clamp_latent_(model)
            if schedule is not None:
                schedule.step()
            loss_total += float(loss.detach()) * len(idx)
            hits += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(step, f"loss {loss_total / seen:.3f}")
        test = tf.accuracy(model, xte, yte)
        history.append({"epoch": epoch, "test": test, "train": hits / seen})
        print(f"epoch {epoch}/{a.epochs} loss {loss_total / seen:.4f} train"
              f" {100 * hits / seen:.2f} % test {100 * test:.2f} %"
              f" ({time.time() - start:.0f} s)", flush=True)  # fmt: skip
    model = model.to(memory_format=torch.contiguous_format).eval()
    before = tf.accuracy(model, xte, yte)
    if a.recal:
        tr.recalibrate_(model, xtr[torch.randperm(len(xtr))[: a.recal]])
    final = tf.accuracy(model, xte, yte)
    print(
        f"{PROG}: test accuracy {100 * before:.2f} % with the running BatchNorm statistics,"
        f" {100 * final:.2f} % after re-estimating them on {a.recal} images",
        flush=True,
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    partial = a.out.with_name(a.out.name + ".part")
    torch.save(model, partial)
    partial.replace(a.out)
    info = {
        "model": a.model,
        "weights": a.weights,
        "test_accuracy": final,
        "test_accuracy_running_bn_stats": before,
        "epochs": a.epochs,
        "seconds": round(time.time() - start, 1),
        "threads": torch.get_num_threads(),
        "bfloat16": bf16,
        "history": history,
        "command": "python examples/train_multibit.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{PROG}: wrote {a.out} ({info['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
