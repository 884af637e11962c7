"""Weight and activation quantizers shared by training and deployment.

The conventions here are the numeric contract of DESIGN §2.3–2.4, used unchanged by the
compiler's frontend:

* a binary weight is ``b = 1[w > 0]`` of its latent weight ``w``; ``b = 1`` selects the level
  ``beta`` and ``b = 0`` the level ``alpha``;
* an activation is ``sign(x)`` with ``sign(0) = +1``;
* the input quantizer maps a float to the integer ``q = clamp(round_half_even(x / scale))``
  and passes on ``q * scale``.

Straight-through estimators are written with ``detach`` (not ``autograd.Function``) so every
layer can be scripted with TorchScript and exported with ``torch.export``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _per_channel_view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _binary_ste(weight: Tensor) -> Tensor:
    """±1 of ``1[w > 0]`` forward, identity gradient."""
    hard = torch.where(weight > 0, torch.ones_like(weight), -torch.ones_like(weight))
    return weight + (hard - weight).detach()


class GDQ(nn.Module):
    """General Domain Quantizer: ``w_b = tau * sign(w) + phi`` (arXiv 2306.13515).

    The two levels are ``alpha = phi - tau`` (``b = 0``) and ``beta = phi + tau`` (``b = 1``),
    learned per layer, or per output channel with ``per_channel=True``.
    """

    def __init__(
        self, out_channels: int, per_channel: bool = False, tau: float = 1.0, phi: float = 0.0
    ) -> None:
        super().__init__()
        n = out_channels if per_channel else 1
        self.tau = nn.Parameter(torch.full((n,), float(tau)))
        self.phi = nn.Parameter(torch.full((n,), float(phi)))

    def forward(self, weight: Tensor) -> Tensor:
        s = _binary_ste(weight)
        return _per_channel_view(self.tau, weight) * s + _per_channel_view(self.phi, weight)

    def levels(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, beta)``, one value per output channel."""
        o = weight.shape[0]
        return (self.phi - self.tau).expand(o), (self.phi + self.tau).expand(o)


class SymmetricQuantizer(nn.Module):
    """Classic XNOR-Net quantizer: ``w_b = s * sign(w)`` with ``s = mean |w|`` per channel.

    The levels are ``alpha = -s`` and ``beta = +s``.
    """

    def __init__(self, out_channels: int, per_channel: bool = True) -> None:
        super().__init__()
        self.per_channel = per_channel

    def _scale(self, weight: Tensor) -> Tensor:
        if self.per_channel:
            return weight.abs().reshape(weight.shape[0], -1).mean(dim=1)
        return weight.abs().mean().expand(weight.shape[0])

    def forward(self, weight: Tensor) -> Tensor:
        return _per_channel_view(self._scale(weight), weight) * _binary_ste(weight)

    def levels(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        s = self._scale(weight)
        return -s, s


class Sign(nn.Module):
    """``sign(x)`` with ``sign(0) = +1``; clipped straight-through gradient (``|x| <= 1``)."""

    def forward(self, x: Tensor) -> Tensor:
        hard = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        soft = torch.clamp(x, -1.0, 1.0)
        return soft + (hard - soft).detach()


class InputQuantizer(nn.Module):
    """The first layer's k-bit input quantizer.

    ``q = clamp(round_half_even(x / scale), qmin, qmax)`` computed in float32, and the layer
    passes on ``q * scale`` (straight-through gradient). Unsigned by default: ``[0, 2^bits-1]``,
    which with ``scale = 1/255`` takes images in ``[0, 1]`` exactly. ``input_shape`` (C, H, W,
    without the batch) is recorded in the saved model so ``bnc compile`` can find it.
    """

    def __init__(
        self,
        bits: int = 8,
        scale: float = 1.0 / 255.0,
        signed: bool = False,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ValueError(f"InputQuantizer bits must be an integer from 2 to 8, not {bits!r}")
        if not scale > 0:
            raise ValueError(f"InputQuantizer scale must be positive, not {scale!r}")
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("qmin", torch.tensor(float(lo)))
        self.register_buffer("qmax", torch.tensor(float(hi)))
        shape = tuple(int(d) for d in input_shape) if input_shape is not None else ()
        self.register_buffer("input_shape", torch.tensor(shape, dtype=torch.int64))

    def forward(self, x: Tensor) -> Tensor:
        q = torch.clamp(torch.round(x / self.scale), self.qmin, self.qmax)
        xq = q * self.scale
        return x + (xq - x).detach()
