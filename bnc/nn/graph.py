"""Containers for graphs that ``nn.Sequential`` cannot say: residual blocks and channel concat.

Models built from these (and ``nn.Sequential``) are plain module trees, so ``torch.save`` files
of them load through bnc's allow-list without ``--trust``. A model with its own ``forward``
(``out = self.body(x) + x``) compiles the same way through ``torch.export``; saved with
``torch.save`` it needs ``--trust``, or save it with ``torch.export.save``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity when ``shortcut`` is None.

    Put the activation quantizer (``Sign``) after the block: the sum of a BatchNorm output and
    a shortcut of bits (standing for ±1) is then one threshold in the compiled code.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """``torch.cat([branch(x) for branch in branches], dim=1)`` (channels)."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class Graph(nn.Module):
    """A data-flow graph of named layers, the form ``bnc quantize`` writes: any DAG of one
    input and one output, saved with ``torch.save`` and loaded through bnc's allow-list.

    ``layers`` maps a name to a module; ``steps`` lists, in an order where every operand is
    computed before it is read, ``(name, kind, operands)``: ``kind`` is ``"layer"`` (the
    module ``name`` applied to its one operand), ``"add"`` (the sum of its operands) or
    ``"cat"`` (their concatenation along channels). An operand is ``"input"`` or an earlier
    step's name; the last step's value is the output.
    """

    KINDS = ("layer", "add", "cat")

    def __init__(
        self, layers: dict[str, nn.Module], steps: list[tuple[str, str, list[str]]]
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        seen = {"input"}
        for name, kind, operands in steps:
            if kind not in self.KINDS:
                raise ValueError(f"Graph step '{name}': kind must be one of {self.KINDS},"
                                 f" not {kind!r}")  # fmt: skip
            missing = [o for o in operands if o not in seen]
            if missing or not operands or name in seen:
                raise ValueError(f"Graph step '{name}' ({kind}) reads {operands}; operands must"
                                 " be 'input' or earlier steps, and names unique")  # fmt: skip
            if kind == "layer" and (name not in self.layers or len(operands) != 1):
                raise ValueError(f"Graph step '{name}': a layer step needs a module of that"
                                 " name and one operand")  # fmt: skip
            seen.add(name)
        if not steps:
            raise ValueError("Graph needs at least one step")
        self.steps = [(str(n), str(k), [str(o) for o in ops]) for n, k, ops in steps]

    def forward(self, x: Tensor) -> Tensor:
        values = {"input": x}
        for name, kind, operands in self.steps:
            args = [values[o] for o in operands]
            if kind == "layer":
                values[name] = self.layers[name](args[0])
            elif kind == "add":
                total = args[0]
                for a in args[1:]:
                    total = total + a
                values[name] = total
            else:
                values[name] = torch.cat(args, dim=1)
        return values[self.steps[-1][0]]
