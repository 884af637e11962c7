"""``bnc quantize --finetune DATA.npz``: a short straight-through fine-tune of the quantized
graph, distilled from the float model.

The quantizers train as they are: the weights' latent values get the straight-through
gradient and each layer's levels or scale its own (``CodebookQuantizer``, ``IntQuantizer``,
``TernaryQuantizer``), the activation scales LSQ's. The loss is the mean of the cross entropy
with the labels and the KL divergence from the float model's softened outputs (temperature 2).
Adam, the learning rate falling from ``lr`` to 0 on a cosine. BatchNorm layers train on batch
statistics; afterwards the caller re-estimates their running statistics on the calibration
samples, as after quantizing.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bnc.errors import BncError
from bnc.nn.graph import Graph
from bnc.nn.sparsity import clamp_latent_

TEMPERATURE = 2.0
KD_WEIGHT = 0.5
BATCH = 128


def load_dataset(path: str | Path, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``DATA.npz`` → (images float32 (N, *shape), labels int64 (N,)), or one line."""
    p = Path(path)
    if not p.is_file():
        raise BncError(f"{path}: no such file (--finetune)")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile) or not {"images", "labels"} <= set(z):
                raise BncError(f"{path}: --finetune takes an .npz with arrays 'images' and"
                               " 'labels'")  # fmt: skip
            images, labels = z["images"], z["labels"]
    except (ValueError, OSError, EOFError) as e:
        raise BncError(f"{path}: not a readable .npz file ({e}) (--finetune)") from None
    if images.dtype.kind != "f" or tuple(images.shape[1:]) != tuple(shape):
        raise BncError(f"{path}: 'images' is {images.dtype} {images.shape}; --finetune takes"
                       f" float32 (N, {', '.join(map(str, shape))}), what the model takes"
                       " (e.g. pixels / 255)")  # fmt: skip
    if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],) or len(labels) == 0:
        raise BncError(f"{path}: 'labels' is {labels.dtype} {labels.shape}; --finetune takes"
                       f" one integer class per image, ({images.shape[0]},)")  # fmt: skip
    if not np.isfinite(images).all():
        raise BncError(f"{path}: 'images' holds NaN or infinite values (--finetune)")
    return torch.from_numpy(np.ascontiguousarray(images, np.float32)), torch.from_numpy(
        labels.astype(np.int64)
    )


def check_labels(labels: Tensor, classes: int, where: str) -> None:
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= classes:
        raise BncError(f"{where}: labels range from {lo} to {hi}; the model has {classes}"
                       f" outputs (classes 0 to {classes - 1})")  # fmt: skip


class _Bar:
    """One progress line on stderr, redrawn in place on a terminal."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.t0 = total, label, time.time()
        self.on = sys.stderr.isatty()

    def update(self, done: int, extra: str) -> None:
        if not self.on or (done % 20 and done != self.total):
            return
        frac = done / self.total
        eta = (time.time() - self.t0) * (1 - frac) / max(frac, 1e-9)
        print(f"\r{self.label} [{'#' * int(30 * frac):<30}] {done}/{self.total} {extra} eta"
              f" {eta:.0f} s ", end="", file=sys.stderr, flush=True)  # fmt: skip
        if done == self.total:
            print(file=sys.stderr)


def finetune(
    model: Graph,
    teacher: Graph,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    lr: float,
    say: Callable[[str], None] = lambda s: None,
    seed: int = 0,
    constrain: Callable[[], None] = lambda: None,
    label: str = "fine-tuning",
) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` passes over ``images``; one dict per epoch.
    ``constrain`` runs after every optimizer step (pruning keeps removed channels at zero)."""
    teacher.eval()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = math.ceil(len(images) / BATCH)
    total = per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    g = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=g)
        seen = hits = 0
        loss_sum = 0.0
        bar = _Bar(per_epoch, f"bnc: {label}, epoch {epoch}/{epochs}")
        for step in range(per_epoch):
            idx = order[step * BATCH : (step + 1) * BATCH]
            xb, yb = images[idx], labels[idx]
            with torch.no_grad():
                soft = F.log_softmax(teacher(xb) / TEMPERATURE, 1)
            logits = model(xb)
            log_p = F.log_softmax(logits / TEMPERATURE, 1)
            kd = (soft.exp() * (soft - log_p)).sum(1).mean() * TEMPERATURE**2
            loss = torch.lerp(F.cross_entropy(logits, yb), kd, KD_WEIGHT)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            clamp_latent_(model)
            constrain()
            loss_sum += float(loss.detach()) * len(idx)
            hits += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(step + 1, f"loss {loss_sum / seen:.3f}")
        history.append({"epoch": epoch, "loss": loss_sum / seen, "train": hits / seen})
        say(f"{label} epoch {epoch}/{epochs}: loss {loss_sum / seen:.4f}, training accuracy"
            f" {100 * hits / seen:.2f} % ({time.time() - t0:.0f} s)")  # fmt: skip
    model.eval()
    return history
