"""The verification ladder of DESIGN §4: PyTorch → IR (real) → IR (integer) → each target.

``climb(module, x, targets)`` runs the same inputs through every stage and returns a
``LadderReport``: how often PyTorch and the integer interpreter agree (activation bits per
Sign layer and the final arg-max), whether each target equals the interpreter bit for bit, and
for the first difference the layer, the element and every stage's value there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bnc.api import CompiledModel, dequantize_flat, output_op
from bnc.api import compile as bnc_compile
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph
from bnc.ir.passes.dead import removed_channels


@dataclass(frozen=True)
class Mismatch:
    """The first element where two stages differ, with every stage's value there."""

    stage: str
    layer: str
    sample: int
    index: tuple[int, ...]
    values: dict[str, Any]

    def __str__(self) -> str:
        vals = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return (
            f"{self.stage}: layer '{self.layer}', sample {self.sample}, element {self.index}: "
            f"{vals}"
        )


@dataclass
class LadderReport:
    samples: int
    argmax_agreement: float  # PyTorch vs integer interpreter
    bit_agreement: dict[str, float]  # per Sign layer, PyTorch vs integer interpreter
    targets_equal: dict[str, bool] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def bit_exact(self) -> bool:
        return all(self.targets_equal.values())

    def __str__(self) -> str:
        lines = [
            f"{self.samples} samples; PyTorch vs interpreter arg-max agreement "
            f"{100 * self.argmax_agreement:.2f} %",
        ]
        for name, rate in self.bit_agreement.items():
            lines.append(f"  activation bits of '{name}': {100 * rate:.3f} % agree")
        for target, ok in self.targets_equal.items():
            lines.append(f"  target {target}: {'bit-exact' if ok else 'DIFFERS'}")
        lines += [f"  {m}" for m in self.mismatches]
        return "\n".join(lines)


def torch_stage(module: nn.Module, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The module's output and every leaf module's output by its path."""
    seen: dict[str, np.ndarray] = {}
    hooks = []
    for name, sub in module.named_modules():
        if name and not list(sub.children()):
            hook = sub.register_forward_hook(
                lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach().numpy())
            )
            hooks.append(hook)
    try:
        module.eval()
        with torch.no_grad():
            out = module(torch.from_numpy(x)).numpy()
    finally:
        for h in hooks:
            h.remove()
    return out.reshape(out.shape[0], -1), seen


def _sign_names(compiled: CompiledModel) -> list[str]:
    """Sign layers after the input (a Sign on the input binarizes the input itself)."""
    g = compiled.graph
    return [n.op.name for n in g.nodes if isinstance(n.op, O.Sign) and INPUT not in n.args]


def _bits_after(compiled: CompiledModel, values: dict[str, Any], sign: str, shape):
    """``(bits, channels)``: the lowered value holding the bits PyTorch's Sign ``sign``
    produced (the threshold that folded it, or the max-pool moved past it) and which of
    PyTorch's channels it holds (all but those the dead-channel pass removed); None if none."""
    g = compiled.lowered
    info = removed_channels(g)
    for node in g.nodes:
        if isinstance(node.op, O.Threshold) and sign in node.op.name.split("+"):
            gone: set[int] = set()
            for r in info.layers if info is not None else ():
                if r.op == node.op.name:
                    gone = {c for c, _ in r.removed}
            kept = [c for c in range(shape[0]) if c not in gone]
            v = node.out
            while values[v].shape[1:] != (len(kept), *shape[1:]):
                users = g.users[v]
                if len(users) != 1 or not isinstance(users[0].op, O.BitMaxPool2d):
                    return None
                v = users[0].out
            return values[v], kept
    return None


def climb(
    module: nn.Module,
    x: np.ndarray,
    targets: tuple[str, ...] = ("c",),
    compiled: CompiledModel | None = None,
) -> LadderReport:
    """Run ``x`` (float32, N×C×H×W) through every stage and compare."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if compiled is None:
        compiled = bnc_compile(module, torch.from_numpy(x[:1]))
    ref, seen = torch_stage(module, x)
    values = interp.run_all(compiled.lowered, x)
    acc = values[compiled.lowered.result].reshape(x.shape[0], -1)
    out_op = output_op(compiled.lowered)
    ours = dequantize_flat(acc, out_op)

    agree: dict[str, float] = {}
    for name in _sign_names(compiled):
        if name not in seen:
            continue
        found = _bits_after(compiled, values, name, seen[name].shape[1:])
        if found is not None:
            got, kept = found
            agree[name] = float(((seen[name][:, kept] >= 0) == (got == 1)).mean())
    report = LadderReport(x.shape[0], float((ref.argmax(1) == ours.argmax(1)).mean()), agree)

    for target in targets:
        model = CompiledModel(compiled.name, compiled.graph, compiled.lowered, target)
        got, _ = model.run_acc(x)
        same = got.shape == acc.shape and bool((got == acc).all())
        report.targets_equal[target] = same
        if not same:
            report.mismatches.append(first_difference(compiled.lowered, values, got, target, ref))
    return report


def first_difference(
    graph: Graph,
    values: dict[str, Any],
    got: np.ndarray,
    target: str,
    ref: np.ndarray | None = None,
) -> Mismatch:
    """The first element where ``got`` (a target's accumulators, N x outputs) differs from
    the interpreter's ``values`` of the lowered ``graph``: the output layer, the element, and
    there T and S of each branch, the interpreter's and the target's value (and PyTorch's)."""
    acc = np.asarray(values[graph.result]).reshape(got.shape[0], -1)
    if got.shape != acc.shape:
        return Mismatch(target, "output", 0, (), {"shape": got.shape, "interpreter": acc.shape})
    sample, flat = (int(v) for v in np.argwhere(got != acc)[0])
    out = next(node for node in graph.nodes if isinstance(node.op, O.OutputAffine))
    ch, y, xx = np.unravel_index(flat, graph.types[out.out].shape)
    stages: dict[str, Any] = {} if ref is None else {"pytorch": float(ref[sample, flat])}
    for v in out.args:
        sums: interp.Sums = values[v]
        name = graph.producer(v).op.name  # type: ignore[union-attr]
        stages[f"T[{name}]"] = int(sums.t[sample, 0, y, xx])
        stages[f"S[{name}]"] = int(sums.s[sample, ch, y, xx])
    stages["interpreter"] = int(acc[sample, flat])
    stages[target] = int(got[sample, flat])
    return Mismatch(target, out.op.name, sample, (int(ch), int(y), int(xx)), stages)
