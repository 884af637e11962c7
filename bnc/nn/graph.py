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
