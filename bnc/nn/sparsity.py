"""The sparsity regularizer of arXiv 2306.13515 and helpers around binary weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from bnc.nn.layers import BinaryConv2d, BinaryLinear

BinaryLayer = BinaryConv2d | BinaryLinear


def binary_layers(model: nn.Module) -> list[BinaryLayer]:
    return [m for m in model.modules() if isinstance(m, BinaryConv2d | BinaryLinear)]


def clamp_latent_(model: nn.Module, bound: float = 1.5) -> None:
    """Clamp every binary layer's latent weights to ``[-bound, bound]`` (after each step)."""
    with torch.no_grad():
        for layer in binary_layers(model):
            layer.weight.clamp_(-bound, bound)


def beta_share(model: nn.Module, exclude: Iterable[nn.Module] = ()) -> float:
    """Share of all binary weights at ``beta`` (``b = 1``); ``1 - beta_share`` is the sparsity."""
    skip = {id(m) for m in exclude}
    ones = total = 0
    for layer in binary_layers(model):
        if id(layer) in skip:
            continue
        ones += int((layer.weight > 0).sum())
        total += layer.weight.numel()
    return ones / max(total, 1)


class SparsityRegularizer:
    """Pushes the share of ``beta`` weights under ``target`` (the paper's EC).

    ``ratio`` counts ``b = 1[w > 0]`` with a straight-through indicator, ``h = relu(ratio -
    target)`` and the loss becomes ``L + lambda * h`` with ``lambda = gamma * L / (h * (1 -
    gamma))`` taken without gradient, so the penalty is always the share ``gamma`` of the total
    loss while the share of ``beta`` is above the target, and nothing once it is below.
    Layers in ``exclude`` (often the first and the classifier) are outside the count.
    """

    def __init__(
        self,
        model: nn.Module,
        target: float = 0.05,
        gamma: float = 0.07,
        exclude: Iterable[nn.Module] = (),
    ) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target (EC) must be a share in [0, 1], not {target!r}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), not {gamma!r}")
        skip = {id(m) for m in exclude}
        self.layers = [m for m in binary_layers(model) if id(m) not in skip]
        if not self.layers:
            raise ValueError("the model has no binary layers to regularize")
        self.target = target
        self.gamma = gamma

    def ratio(self) -> Tensor:
        ones = []
        total = 0
        for layer in self.layers:
            w = layer.weight
            hard = (w > 0).to(w.dtype)
            ones.append((w + (hard - w).detach()).sum())
            total += w.numel()
        return torch.stack(ones).sum() / total

    def __call__(self, task_loss: Tensor) -> Tensor:
        h = torch.relu(self.ratio() - self.target)
        if float(h.detach()) <= 1e-12:
            return task_loss
        lam = (self.gamma * task_loss / (h * (1.0 - self.gamma))).detach()
        return task_loss + lam * h
