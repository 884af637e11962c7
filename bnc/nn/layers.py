"""Binary convolution and linear layers that mirror ``nn.Conv2d`` and ``nn.Linear``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bnc.nn.quant import GDQ, SymmetricQuantizer

QUANTIZERS = {"gdq": GDQ, "symmetric": SymmetricQuantizer}


def _make_quantizer(kind: str | nn.Module, out_channels: int, per_channel: bool) -> nn.Module:
    if isinstance(kind, nn.Module):
        return kind
    if kind not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {sorted(QUANTIZERS)}, not {kind!r}")
    return QUANTIZERS[kind](out_channels, per_channel=per_channel)


class BinaryConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weights are binarized by ``quantizer`` (GDQ by default).

    Zero padding is in the value domain, as ``F.conv2d`` does after ``Sign``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        quantizer: str | nn.Module = "gdq",
        per_channel: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.quantizer = _make_quantizer(quantizer, out_channels, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.quantizer(self.weight), self.bias, self.stride, self.padding)


class BinaryLinear(nn.Linear):
    """``nn.Linear`` whose weights are binarized by ``quantizer`` (GDQ by default)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        quantizer: str | nn.Module = "gdq",
        per_channel: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.quantizer = _make_quantizer(quantizer, out_features, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantizer(self.weight), self.bias)
