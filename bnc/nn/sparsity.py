"""The sparsity regularizer of arXiv 2306.13515 and helpers around binary weights.

A weight *counts* when it is at ``beta`` (``b = 1[w > 0]``, GDQ and symmetric layers) or, in a
ternary layer, when it is nonzero (``|w| > delta``); the share of counted weights is what the
schedule and the regularizer hold under a target. Integer and multi-bit (AMQ) layers have no
such share: counting one is a ValueError that says to pass it in ``exclude=``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from bnc.nn.layers import BinaryConv2d, BinaryLinear
from bnc.nn.quant import (
    ActQuantizer,
    CodebookQuantizer,
    IntQuantizer,
    MultiBitQuantizer,
    TernaryQuantizer,
)

BinaryLayer = BinaryConv2d | BinaryLinear


def binary_layers(model: nn.Module) -> list[BinaryLayer]:
    """Every ``BinaryConv2d`` / ``BinaryLinear``, whatever its quantizer, in module order."""
    return [m for m in model.modules() if isinstance(m, BinaryConv2d | BinaryLinear)]


def _is_ternary(layer: BinaryLayer) -> bool:
    return isinstance(layer.quantizer, TernaryQuantizer)


def _multi_level(layer: BinaryLayer) -> bool:
    return isinstance(layer.quantizer, IntQuantizer | MultiBitQuantizer | CodebookQuantizer)


def _counted(model: nn.Module, layers: list[BinaryLayer], who: str) -> list[BinaryLayer]:
    """``layers``, refusing any whose weights are not binary or ternary."""
    for layer in layers:
        q = layer.quantizer
        if _multi_level(layer):
            path = next((p for p, m in model.named_modules() if m is layer), "?")
            raise ValueError(
                f"{who}: layer '{path}' ({type(layer).__name__}) has {type(q).__name__} weights,"
                " which have no beta or nonzero share to constrain; pass it in exclude="
            )
    return layers


def _ones(layer: BinaryLayer) -> int:
    """Counted weights of one layer: at beta, or nonzero (ternary)."""
    w = layer.weight.detach()
    if _is_ternary(layer):
        return int(layer.quantizer.nonzero(w).sum())
    return int((w > 0).sum())


MIN_ACT_SCALE = 1e-4


def clamp_latent_(model: nn.Module, bound: float = 1.5) -> None:
    """Clamp every binary layer's latent weights to ``[-bound, bound]`` and keep every
    ``ActQuantizer``'s learned scale at least ``MIN_ACT_SCALE`` (after each step): an
    optimizer step larger than a small scale would otherwise carry it through zero, and a
    quantizer needs a positive scale to compile."""
    with torch.no_grad():
        for layer in binary_layers(model):
            layer.weight.clamp_(-bound, bound)
        for m in model.modules():
            if isinstance(m, ActQuantizer):
                m.scale.clamp_(min=MIN_ACT_SCALE)


def beta_share(model: nn.Module, exclude: Iterable[nn.Module] = ()) -> float:
    """Share of all binary weights at ``beta`` (``b = 1``), or nonzero in ternary layers;
    ``1 - beta_share`` is the sparsity."""
    skip = {id(m) for m in exclude}
    layers = [m for m in binary_layers(model) if id(m) not in skip]
    ones = total = 0
    for layer in _counted(model, layers, "beta_share"):
        ones += _ones(layer)
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
        layers = [m for m in binary_layers(model) if id(m) not in skip]
        self.layers = _counted(model, layers, "SparsityRegularizer")
        if not self.layers:
            raise ValueError("the model has no binary layers to regularize")
        self.target = target
        self.gamma = gamma

    def ratio(self) -> Tensor:
        ones = []
        total = 0
        for layer in self.layers:
            w = layer.weight
            if _is_ternary(layer):  # nonzero share; the gradient pushes |w| down
                w = w.abs()
                hard = layer.quantizer.nonzero(w).to(w.dtype)
            else:
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


class SparsitySchedule:
    """Holds the share of ``beta`` weights of each counted layer at or under a target that
    falls from ``start`` to ``target`` (EC) on a cubic schedule (Zhu & Gupta, 2017).

    Call :meth:`step` after every optimizer step. A layer whose share is above the current
    target has its latent weights moved down by one constant, the value that leaves exactly the
    allowed number above zero; ``b = 1[w > 0]`` keeps its meaning, the order of the latent
    weights is unchanged, and a layer under the target is not touched. This is the exact form of
    what the published regularizer approximates: its straight-through gradient of the share is
    the same ``1 / N`` for every weight, a uniform push down that shrinks with the size of the
    network (so it stalls on larger ones) and that Adam rescales per weight. A ternary layer
    counts its nonzero weights instead: its ``delta`` is raised to the value that leaves exactly
    the allowed number with ``|w| > delta``, and its latent weights are not moved. Integer and
    multi-bit layers must be in ``exclude`` (a ValueError says so).

    The target is ``start`` until ``begin`` (a share of ``total_steps``: the dense network learns
    its features first), falls as ``target + (start - target) * (1 - t)^3`` until ``end``, and
    is ``target`` after that, leaving the remaining steps to recover accuracy at the final
    sparsity. ``per_layer=False`` puts one threshold over all counted layers instead (the
    paper's global count: large layers may end sparser than small ones; the counted layers must
    then be all binary or all ternary, one threshold on ``w`` or on ``|w|``). Layers in ``exclude``
    (often the first layer and the classifier) are not constrained; with ``count_excluded`` their
    beta weights still count against the target, which the counted layers then meet with
    ``(target * N_all - beta_excluded) / N_counted``, so the share over all binary weights is at
    most the target (integer and multi-bit layers in ``exclude`` are outside both counts).
    """

    def __init__(
        self,
        model: nn.Module,
        target: float,
        total_steps: int,
        start: float = 0.5,
        begin: float = 0.1,
        end: float = 0.6,
        exclude: Iterable[nn.Module] = (),
        per_layer: bool = True,
        count_excluded: bool = False,
        bound: float = 1.5,
    ) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target (EC) must be a share in [0, 1], not {target!r}")
        if not target <= start <= 1.0:
            raise ValueError(f"start must be a share in [target, 1], not {start!r}")
        if not 0.0 <= begin <= end <= 1.0:
            raise ValueError(
                f"begin and end must satisfy 0 <= begin <= end <= 1, not {begin!r}, {end!r}"
            )
        if total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, not {total_steps!r}")
        skip = {id(m) for m in exclude}
        layers = [m for m in binary_layers(model) if id(m) not in skip]
        self.layers = _counted(model, layers, "SparsitySchedule")
        if not self.layers:
            raise ValueError("the model has no binary layers to constrain")
        if not per_layer and len({_is_ternary(m) for m in self.layers}) > 1:
            raise ValueError(
                "SparsitySchedule: per_layer=False puts one threshold over binary and ternary"
                " layers, which count differently (w > 0 and |w| > delta); use per_layer=True"
                " or exclude one kind"
            )
        excluded = [m for m in binary_layers(model) if id(m) in skip] if count_excluded else []
        self.excluded = [m for m in excluded if not _multi_level(m)]  # no share to count
        self.n_counted = sum(m.weight.numel() for m in self.layers)
        self.n_all = self.n_counted + sum(m.weight.numel() for m in self.excluded)
        self.target = target
        self.start = start
        self.total_steps = total_steps
        self.begin = begin
        self.end = end
        self.per_layer = per_layer
        self.bound = bound
        self.steps = 0

    def share_at(self, step: int) -> float:
        """The allowed share of ``beta`` weights after ``step`` optimizer steps."""
        t0, t1 = self.begin * self.total_steps, self.end * self.total_steps
        if step <= t0:
            return self.start
        if step >= t1:
            return self.target
        t = (step - t0) / (t1 - t0)
        return self.target + (self.start - self.target) * (1.0 - t) ** 3

    @torch.no_grad()
    def project(self, share: float) -> None:
        """Move latent weights (raise ternary ``delta``) so that at most ``share`` of each
        counted layer is at beta (nonzero)."""
        if self.excluded:
            ones = sum(_ones(m) for m in self.excluded)
            share = max(0.0, (share * self.n_all - ones) / self.n_counted)
        groups = [[m] for m in self.layers] if self.per_layer else [self.layers]
        for group in groups:
            ws = [m.weight for m in group]
            n = sum(w.numel() for w in ws)
            allowed = int(share * n)
            if sum(_ones(m) for m in group) <= allowed:
                continue
            if _is_ternary(group[0]):
                # The (n - allowed)-th smallest |w| becomes delta: exactly `allowed` lie above.
                mags = torch.cat([w.detach().abs().flatten() for w in ws])
                delta = torch.kthvalue(mags, n - allowed).values
                for m in group:
                    m.quantizer.delta.copy_(delta)
                continue
            flat = torch.cat([w.detach().flatten() for w in ws])
            # The (allowed + 1)-th largest latent weight moves to 0, so exactly `allowed` stay > 0.
            shift = torch.kthvalue(flat, n - allowed).values
            for w in ws:
                w.sub_(shift).clamp_(-self.bound, self.bound)

    def step(self) -> float:
        """Advance one optimizer step and enforce the target; returns the target in force."""
        self.steps += 1
        share = self.share_at(self.steps)
        self.project(share)
        return share
