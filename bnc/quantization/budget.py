"""``bnc quantize --budget BYTES``: mixed precision, weight bits per layer under a byte budget.

For every layer with weights and every candidate width (1 to ``--weights`` bits; 2 up for
``--method int``) the layer's weights are quantized alone and two numbers measured:

* its **bytes** as the compiler stores them: the binary masks ``ir.passes.multibit.decompose``
  makes of the layer's codes (bit planes or one-hot masks, whichever it would run), each
  ``ceil(weights / 8)`` bytes, the number ``bnc inspect`` reports (of the channels a
  ``--prune`` keeps; the inputs of removed channels still counted, so the budget is an upper
  bound there);
* its **sensitivity**: the mean squared change of the float model's outputs on the first
  ``SAMPLES`` calibration samples when only that layer's weights are quantized, over the
  outputs' variance (activations left float: the sensitivity is the weights' own).

Sensitivities are taken as additive. Every layer starts at its widest candidate; while the
total is over the budget, the move to a narrower width with the least sensitivity added per
byte saved is made (a multiple-choice knapsack solved greedily, as HAWQ-style allocations do).
A budget below every layer at its smallest is refused, naming that smallest total.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bnc.errors import BncError
from bnc.ir.passes.multibit import decompose
from bnc.nn.graph import Graph

SAMPLES = 512


@dataclass(frozen=True)
class Allocation:
    bits: dict[str, int]  # layer → weight bits
    total: int  # the chosen layers' bytes
    smallest: int
    widest: int
    sizes: dict[str, dict[int, int]]
    sensitivity: dict[str, dict[int, float]]


def check_budget(budget: object) -> int:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise BncError(f"--budget must be a positive number of weight bytes, not {budget!r}")
    return budget


def layer_bytes(w: Tensor, q: nn.Module, keep: Tensor | None) -> int:
    """The compiled bytes of ``w`` under the weight quantizer ``q``: masks × ceil(n / 8)."""
    index, levels = q.codes(w.detach())
    if keep is not None:
        index, levels = index[keep], levels[keep]
    d = decompose(index.numpy().astype(np.int64), levels.to(torch.float64).numpy())
    return int(d.masks.shape[0]) * ((int(index.numel()) + 7) // 8)


@torch.no_grad()
def allocate(
    fg: Graph,
    x: Tensor,
    budget: int,
    candidates: list[int],
    fit: Callable[[str, Tensor, int], nn.Module],
    masks: dict[str, Tensor],
    say: Callable[[str], None] = lambda s: None,
) -> Allocation:
    """Each weighted layer's bits (from ``candidates``) so that the bytes fit ``budget``;
    ``fit(name, w, bits)`` makes the layer's quantizer."""
    fg.eval()
    sample = x[:SAMPLES]
    ref = fg(sample)
    var = float(ref.var()) or 1.0
    names = [n for n, k, _ in fg.steps if k == "layer" and isinstance(fg.layers[n], nn.Conv2d
                                                                        | nn.Linear)]  # fmt: skip
    say(f"measuring {len(names)} layers at {', '.join(map(str, candidates))} bits (--budget)")
    sizes: dict[str, dict[int, int]] = {}
    sens: dict[str, dict[int, float]] = {}
    for name in names:
        layer = fg.layers[name]
        w = layer.weight.detach().clone()
        sizes[name], sens[name] = {}, {}
        for b in candidates:
            q = fit(name, w, b)
            sizes[name][b] = layer_bytes(w, q, masks.get(name))
            layer.weight.copy_(q(w))
            sens[name][b] = float(((fg(sample) - ref) ** 2).mean()) / var
            layer.weight.copy_(w)
        say(f"layer '{name}': " + ", ".join(f"{b} bit{'s' if b > 1 else ''} {sizes[name][b]:,}"
                                             f" B (sensitivity {sens[name][b]:.2e})"
                                             for b in candidates))  # fmt: skip
    smallest = sum(min(s.values()) for s in sizes.values())
    widest = sum(s[candidates[-1]] for s in sizes.values())
    if budget < smallest:
        raise BncError(f"--budget {budget:,} bytes is below the smallest model: {smallest:,}"
                       f" bytes of weights with every layer at {candidates[0]} bit"
                       f"{'s' if candidates[0] > 1 else ''}")  # fmt: skip
    bits = {n: candidates[-1] for n in names}
    total = widest
    while total > budget:
        best: tuple[float, str, int] | None = None
        for n in names:
            here = sizes[n][bits[n]]
            for b in candidates:
                saved = here - sizes[n][b]
                if b < bits[n] and saved > 0:
                    cost = (sens[n][b] - sens[n][bits[n]]) / saved
                    if best is None or cost < best[0]:
                        best = (cost, n, b)
        assert best is not None  # total > budget >= smallest: some layer can shrink
        _, n, b = best
        total -= sizes[n][bits[n]] - sizes[n][b]
        bits[n] = b
    return Allocation(bits, total, smallest, widest, sizes, sens)
