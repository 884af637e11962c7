"""Train one of Brevitas' own BNN-PYNQ fully connected networks on FashionMNIST; export QONNX.

    python examples/train_brevitas.py
    python examples/train_brevitas.py --model sfc_1w2a --epochs 20 -o build/fashion_sfc.onnx

The network is ``brevitas_examples.bnn_pynq.models.model_with_cfg(MODEL, pretrained=False)``,
by default TFC-W1A1: the input (N, 1, 28, 28) in [0, 1] is mapped to 2x - 1 and binarized,
then three binary ``QuantLinear`` 64 each with BatchNorm, binary activation and dropout, a
binary ``QuantLinear`` 10 and Brevitas' ``TensorNorm``. The recipe is that of Brevitas'
``bnn_pynq/trainer.py`` (Adam at ``--lr`` 0.02, batch 100, its ``SqrHingeLoss`` on +-1
one-hot targets, latent weights clipped to [-1, 1] after each step), shortened to 60 epochs
(about 2 minutes on one thread) with a cosine decay of the learning rate to zero, and without
dropout by default: the network underfits FashionMNIST, and Brevitas' dropout 0.2
(``--dropout 0.2``) costs it one to two points. TFC-W1A1 reaches about 81.5-82 % (a float MLP
of the same shape on the same 1-bit input, 84 %); longer training, learning rates from 0.005
to 0.05, cross-entropy (``--loss ce``) or horizontal flips (``--flip``) do not do better.
The ``examples`` helpers read the idx files of the Debian package dataset-fashion-mnist.

Prints one line per epoch (loss, train and test accuracy, elapsed time); then exports the
model in eval mode with ``brevitas.export.export_qonnx`` (batch 1, as Brevitas exports it) to
``-o`` and runs that file with ``qonnx.core.onnx_exec.execute_onnx``, one image at a time
(the exported graph flattens to a fixed ``[1, -1]``; about 11 ms an image, 2 minutes for all),
on the first ``--check`` test images (default all 10,000), and prints its accuracy next to
PyTorch's on the same images and the share of arg-maxes on which the two agree. Exits with
status 1 if they agree on less than 99.9 % of them; bad arguments print one line on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
tf = importlib.import_module("train_fashion")  # accuracy, Progress, DATA, FILES
tr = importlib.import_module("train_resnet")  # Parser, setup, batches

# Brevitas warns on import that it falls back to plain kernels for Hadamard rotations, which
# these networks do not use.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

from brevitas.export import export_qonnx  # noqa: E402
from brevitas_examples.bnn_pynq.models import model_with_cfg  # noqa: E402
from brevitas_examples.bnn_pynq.models.losses import SqrHingeLoss  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402

PROG = "train_brevitas"
# The BNN-PYNQ configurations of the fully connected topology (28x28 inputs, 10 classes).
MODELS = (
    "tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a",
    "lfc_1w2a",
)  # fmt: skip
AGREEMENT = 0.999  # the least share of arg-maxes the QONNX file must share with PyTorch


def default_output(name: str) -> Path:
    """``examples/fashion_tfc_w1a1.onnx`` for ``tfc_1w1a``, and so on."""
    arch, bits = name.split("_")
    w, a = bits[: bits.index("w")], bits[bits.index("w") + 1 : -1]
    return HERE / f"fashion_{arch}_w{w}a{a}.onnx"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = tr.Parser(
        prog=PROG,
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=MODELS, default="tfc_1w1a",
                   help="Brevitas BNN-PYNQ configuration (default tfc_1w1a)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    p.add_argument("--lr", type=float, default=0.02, help="initial Adam learning rate (0.02)")
    p.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    p.add_argument("--loss", choices=("sqrhinge", "ce"), default="sqrhinge",
                   help="Brevitas' squared hinge on +-1 targets, or cross-entropy")  # fmt: skip
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout probability (default 0; Brevitas': 0.2)")  # fmt: skip
    p.add_argument("--flip", action="store_true", help="horizontal-flip augmentation")
    p.add_argument("--check", type=int, default=10000,
                   help="test images run through the QONNX file with execute_onnx"
                   " (default all 10000; 0: skip the check)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: a small network; 0: all cores)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    p.add_argument("--data-dir", type=Path, default=tf.DATA, help=f"idx files (default {tf.DATA})")
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    p.add_argument("-o", "--output", type=Path,
                   help="the QONNX file (default examples/fashion_<arch>_w<W>a<A>.onnx,"
                   " for example examples/fashion_tfc_w1a1.onnx)")  # fmt: skip
    a = p.parse_args(argv)
    if a.output is None:
        a.output = default_output(a.model)
    checks = [
        (a.epochs >= 1, f"--epochs must be positive, not {a.epochs}"),
        (a.batch >= 1, f"--batch must be positive, not {a.batch}"),
        (a.lr > 0.0, f"--lr must be positive, not {a.lr}"),
        (0.0 <= a.dropout < 1.0, f"--dropout must be in [0, 1), not {a.dropout}"),
        (0 <= a.check <= 10000, f"--check must be from 0 to 10000 images, not {a.check}"),
        (a.threads >= 0, f"--threads must be 0 (all cores) or positive, not {a.threads}"),
        (a.output.suffix == ".onnx", f"--output {a.output}: the file must end in .onnx"),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    tr.check_paths(p, a.data_dir, a.output, "--output")
    return a


def hinge_targets(y: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """+1 at the label, -1 elsewhere: the targets of ``SqrHingeLoss``."""
    return torch.full((len(y), classes), -1.0).scatter_(1, y[:, None], 1.0)


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(chunk) for chunk in x.split(1000)])


def train(a: argparse.Namespace, model: nn.Module, data: tuple[torch.Tensor, ...]) -> float:
    """Trains ``model`` in place, one line per epoch; returns the seconds it took."""
    xtr, ytr, xte, yte = data
    per_epoch = (len(xtr) + a.batch - 1) // a.batch
    steps = per_epoch * a.epochs
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))
    )
    criterion = SqrHingeLoss() if a.loss == "sqrhinge" else nn.CrossEntropyLoss()
    n_weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    print(f"{PROG}: {a.model} ({n_weights} weights), {a.epochs} epochs of {per_epoch} steps"
          f" (batch {a.batch}), Adam lr {a.lr} cosine to 0, loss {a.loss}, dropout {a.dropout},"
          f" {torch.get_num_threads()} threads", flush=True)  # fmt: skip
    start = time.time()
    for epoch in range(1, a.epochs + 1):
        model.train()
        seen = hits = 0
        loss_total = 0.0
        bar = tf.Progress(per_epoch, f"epoch {epoch}/{a.epochs}", a.progress)
        for step, idx in enumerate(tr.batches(len(xtr), a.batch), 1):
            xb, yb = xtr[idx], ytr[idx]
            if a.flip:
                xb = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, xb.flip(3), xb)
            logits = model(xb)
            target = hinge_targets(yb) if a.loss == "sqrhinge" else yb
            loss = criterion(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_sched.step()
            model.clip_weights(-1.0, 1.0)
            loss_total += float(loss.detach()) * len(idx)
            hits += int((logits.detach().argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(step, f"loss {loss_total / seen:.4f}")
        test = tf.accuracy(model, xte, yte)
        print(f"epoch {epoch}/{a.epochs} loss {loss_total / seen:.4f} train"
              f" {100 * hits / seen:.2f} % test {100 * test:.2f} %"
              f" ({time.time() - start:.0f} s)", flush=True)  # fmt: skip
    return time.time() - start


def check_qonnx(a: argparse.Namespace, torch_logits: torch.Tensor, xte, yte) -> float:
    """Runs the QONNX file on the first ``a.check`` test images; returns the agreement."""
    n = a.check
    wrapper = ModelWrapper(str(a.output))
    iname, oname = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    ops = sorted({node.op_type for node in wrapper.graph.node if node.domain.startswith("qonnx")})
    print(f"{PROG}: {a.output}: {len(wrapper.graph.node)} nodes (QONNX ops {', '.join(ops)}),"
          f" input {iname!r}, output {oname!r}; execute_onnx on {n} test images",
          flush=True)  # fmt: skip
    images = xte[:n].numpy()
    out = np.empty((n, torch_logits.shape[1]), dtype=np.float32)
    bar = tf.Progress(n, "execute_onnx", a.progress)
    start = time.time()
    for i in range(n):
        out[i] = execute_onnx(wrapper, {iname: images[i : i + 1]})[oname].reshape(-1)
        bar.update(i + 1)
    seconds = time.time() - start
    ref = torch_logits[:n].numpy()
    labels = yte[:n].numpy()
    q_pred, t_pred = out.argmax(1), ref.argmax(1)
    agree = float((q_pred == t_pred).mean())
    print(f"{PROG}: on the first {n} test images: QONNX accuracy"
          f" {100 * float((q_pred == labels).mean()):.2f} %, PyTorch accuracy"
          f" {100 * float((t_pred == labels).mean()):.2f} %; arg-maxes agree on"
          f" {100 * agree:.2f} % ({int((q_pred != t_pred).sum())} differ), largest logit"
          f" difference {float(np.abs(out - ref).max()):.3g}; execute_onnx"
          f" {1000 * seconds / n:.1f} ms per image ({seconds:.0f} s)", flush=True)  # fmt: skip
    return agree


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    xtr, ytr, xte, yte = tr.setup(a)
    model, _cfg = model_with_cfg(a.model, pretrained=False)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = a.dropout
    seconds = train(a, model, (xtr, ytr, xte, yte))
    model.eval()
    torch_logits = logits_of(model, xte)
    final = float((torch_logits.argmax(1) == yte).float().mean())
    print(f"{PROG}: PyTorch test accuracy {100 * final:.2f} % after {a.epochs} epochs"
          f" ({seconds:.0f} s of training)", flush=True)  # fmt: skip

    partial = a.output.with_name(a.output.name + ".part")
    export_qonnx(model.eval(), torch.rand(1, 1, 28, 28), export_path=str(partial))
    # torch.onnx's exporter writes the weights beside the file, in ``<file>.data``; Brevitas
    # then loads the model and saves it again with the weights inside: that file is left over.
    partial.with_name(partial.name + ".data").unlink(missing_ok=True)
    partial.replace(a.output)
    print(f"{PROG}: wrote {a.output} ({a.output.stat().st_size} bytes)", flush=True)
    if a.check:
        agree = check_qonnx(a, torch_logits, xte, yte)
        if agree < AGREEMENT:
            print(f"{PROG}: error: the QONNX file agrees with PyTorch on {100 * agree:.2f} %"
                  f" of the arg-maxes, less than {100 * AGREEMENT:.1f} %",
                  file=sys.stderr)  # fmt: skip
            sys.exit(1)


if __name__ == "__main__":
    main()
