"""Binary and low-bit convolution and linear layers that mirror ``nn.Conv2d`` and ``nn.Linear``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bnc.nn.quant import (
    GDQ,
    IntQuantizer,
    MultiBitQuantizer,
    SymmetricQuantizer,
    TernaryQuantizer,
    check_bits,
)

QUANTIZERS = {
    "gdq": GDQ,
    "symmetric": SymmetricQuantizer,
    "ternary": TernaryQuantizer,
    "int": IntQuantizer,
    "multibit": MultiBitQuantizer,
}
"""``quantizer=`` names → classes. ``gdq`` and ``symmetric`` give 1-bit weights (two levels),
``ternary`` three levels, ``int`` and ``multibit`` ``2^weight_bits`` levels."""

_MIN_BITS = {"int": 2, "multibit": 1}


def _make_quantizer(
    layer: str,
    kind: str | nn.Module,
    weight: Tensor,
    per_channel: bool,
    weight_bits: int | None,
) -> nn.Module:
    if isinstance(kind, nn.Module):
        if weight_bits is not None:
            raise ValueError(
                f"{layer}: weight_bits goes with a quantizer named by a string, not with a"
                f" {type(kind).__name__} module (give the module its bits)"
            )
        return kind
    if kind not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {sorted(QUANTIZERS)}, not {kind!r}")
    out_channels = weight.shape[0]
    if kind in ("gdq", "symmetric"):
        if weight_bits not in (None, 1):
            raise ValueError(
                f"{layer}: quantizer {kind!r} has 1-bit weights; weight_bits must be 1 or None,"
                f" not {weight_bits!r} (use quantizer='int' or 'multibit' for more bits)"
            )
        return QUANTIZERS[kind](out_channels, per_channel=per_channel)
    if kind == "ternary":
        if weight_bits not in (None, 2):
            raise ValueError(
                f"{layer}: quantizer 'ternary' has 2-bit codes; weight_bits must be 2 or None,"
                f" not {weight_bits!r}"
            )
        return TernaryQuantizer(out_channels, weight)
    bits = check_bits(f"{layer}: quantizer {kind!r} weight_bits", weight_bits, _MIN_BITS[kind])
    return QUANTIZERS[kind](out_channels, bits, weight)


class BinaryConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weights are quantized by ``quantizer`` (GDQ by default).

    ``quantizer`` is ``"gdq"``, ``"symmetric"`` (1-bit; ``per_channel`` applies to these two),
    ``"ternary"``, ``"int"`` or ``"multibit"`` (per output channel; the last two take
    ``weight_bits``), or a quantizer module. A named quantizer is initialised from the layer's
    initial weight. Zero padding is in the value domain, as ``F.conv2d`` does after ``Sign``.
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
        weight_bits: int | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.quantizer = _make_quantizer(
            "BinaryConv2d", quantizer, self.weight, per_channel, weight_bits
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.quantizer(self.weight), self.bias, self.stride, self.padding)


class BinaryLinear(nn.Linear):
    """``nn.Linear`` whose weights are quantized by ``quantizer`` (as ``BinaryConv2d``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        quantizer: str | nn.Module = "gdq",
        per_channel: bool = False,
        weight_bits: int | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.quantizer = _make_quantizer(
            "BinaryLinear", quantizer, self.weight, per_channel, weight_bits
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantizer(self.weight), self.bias)
