"""``bnc quantize --prune F``: structured L1 pruning of whole output channels.

A layer with weights (``Conv2d`` / ``Linear``, float or quantized) loses the fraction ``F`` of
its output channels with the smallest L1 norm (rounded down, at least one kept). A removed
channel's weights, bias and the scale and shift of the BatchNorm after it are zero, so its
value is exactly 0 all the way to the next layer with weights (through ReLU, pools and
flatten): the compiler's dead-channel pass then removes it with the matching inputs of its
readers (``bnc inspect`` lists them). A ``CodebookQuantizer``'s row of a removed channel is
all zero levels, so its weights quantize to 0 whatever the latent values.

A layer is prunable when everything between it and the next layers with weights is a layer
step of those kinds: not a residual add or a concatenation (a removed channel would not be
constant there), and not the network's output (its channels are the classes).

With ``--finetune``, pruning is iterative (``schedule``): 20 % of the channels at a time,
each step followed by a fine-tune, the next step choosing by the fine-tuned weights (the
removed channels stay removed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnc.errors import BncError
from bnc.nn.graph import Graph
from bnc.nn.quant import ActQuantizer, CodebookQuantizer

STEP = 0.2  # the fraction of channels removed per fine-tuned step
_PASS = (
    nn.ReLU,
    ActQuantizer,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)

Masks = dict[str, Tensor]  # layer → bool (O,): True where the channel is kept


def check_fraction(fraction: object) -> float:
    if (
        not isinstance(fraction, int | float)
        or isinstance(fraction, bool)
        or not (0 < fraction < 1)
    ):
        raise BncError(f"--prune must be a fraction of each layer's channels, above 0 and below"
                       f" 1 (0.5 removes half), not {fraction!r}")  # fmt: skip
    return float(fraction)


def schedule(fraction: float, iterative: bool) -> list[float]:
    """The cumulative fractions pruned step by step: ``[F]`` at once, or 20 % at a time."""
    if not iterative:
        return [fraction]
    steps = max(1, math.ceil(fraction / STEP - 1e-9))
    return [min(fraction, STEP * k) for k in range(1, steps + 1)]


def _weighted(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d | nn.Linear)


def prunable(graph: Graph) -> dict[str, list[str]]:
    """Each prunable layer → the BatchNorm layers whose channels go with its own."""
    readers: dict[str, list[int]] = {}
    for i, (_name, _kind, operands) in enumerate(graph.steps):
        for o in operands:
            readers.setdefault(o, []).append(i)
    out = graph.steps[-1][0]
    groups: dict[str, list[str]] = {}
    for name, kind, _ops in graph.steps:
        if kind != "layer" or not _weighted(graph.layers[name]) or name == out:
            continue
        norms: list[str] = []
        todo, ok, reaches = [(name, False)], True, False
        while todo and ok:
            step, flat = todo.pop()
            for i in readers.get(step, []):
                rname, rkind, _ = graph.steps[i]
                layer = graph.layers[rname] if rkind == "layer" else None
                norm = isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d)
                if layer is not None and _weighted(layer):
                    reaches = True
                elif not isinstance(layer, _PASS) or rname == out or (norm and flat):
                    ok = False  # a BatchNorm after a flatten has a feature per pixel
                    break
                else:
                    if norm:
                        norms.append(rname)
                    todo.append((rname, flat or isinstance(layer, nn.Flatten)))
        if ok and reaches:
            groups[name] = norms
    return groups


def choose(graph: Graph, groups: dict[str, list[str]], fraction: float, before: Masks) -> Masks:
    """The channels kept when ``fraction`` of each prunable layer's are removed, the ones of
    the smallest L1 norm; the channels removed ``before`` are removed first."""
    masks: Masks = {}
    for name in groups:
        w = graph.layers[name].weight.detach()
        o = w.shape[0]
        score = w.reshape(o, -1).abs().sum(dim=1).to(torch.float64)
        if name in before:
            score = torch.where(before[name], score, torch.full_like(score, -1.0))
        drop = min(int(fraction * o + 1e-9), o - 1)
        keep = torch.ones(o, dtype=torch.bool)
        keep[torch.argsort(score, stable=True)[:drop]] = False
        masks[name] = keep
    return masks


@torch.no_grad()
def apply(graph: Graph, groups: dict[str, list[str]], masks: Masks) -> None:
    """Zero every removed channel: weights, bias, codebook row and its BatchNorms' γ and β."""
    for name, keep in masks.items():
        gone = ~keep
        layer = graph.layers[name]
        layer.weight[gone] = 0
        if layer.bias is not None:
            layer.bias[gone] = 0
        q = getattr(layer, "quantizer", None)
        if isinstance(q, CodebookQuantizer):
            q.levels[gone] = 0
        for bn in groups[name]:
            norm = graph.layers[bn]
            if norm.weight is not None:
                norm.weight[gone] = 0
                norm.bias[gone] = 0


def fit_kept(
    w: Tensor, keep: Tensor | None, fit: Callable[[Tensor, Tensor | slice], nn.Module]
) -> nn.Module:
    """The quantizer ``fit(rows, which)`` makes for ``w``, its per-channel state fitted on the
    kept rows only (a shared threshold or a layer codebook does not see the removed channels'
    zeros); ``which`` selects the rows of anything else per weight (an importance)."""
    q = fit(w, slice(None))
    if keep is None or bool(keep.all()):
        return q
    part = fit(w[keep], keep).state_dict()
    full = q.state_dict()
    with torch.no_grad():
        for key, value in part.items():
            if value.shape == full[key].shape:
                full[key].copy_(value)
            else:
                full[key][keep] = value
    q.load_state_dict(full)
    return q


def describe(masks: Masks) -> dict[str, str]:
    return {n: f"{int((~k).sum())} of {k.numel()} channels pruned (L1)" for n, k in masks.items()}
