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

import math
from collections.abc import Mapping

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


# --- multi-level weights ----------------------------------------------------------------
#
# Each quantizer below gives a weight as ``levels[o, index[o, ...]]``: ``codes(weight)`` returns
# that pair and ``forward(weight)`` its value, bit for bit (the same float32 operations in the
# same order), so the frontend's ``QuantConv2d`` / ``QuantLinear`` hold exactly the weights the
# model trained with. Every hyper-parameter is a parameter or buffer: ``from_state_dict``
# rebuilds the quantizer from a saved state dict alone.


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """The value of ``hard`` exactly (``soft - soft.detach()`` is 0), the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def _grad_scale(x: Tensor, g: Tensor) -> Tensor:
    """About ``x`` in value, ``g`` times its gradient (LSQ's step-size gradient scale)."""
    y = x * g
    return (x - y).detach() + y


def _lsq(x: Tensor, scale: Tensor, qmin: Tensor, qmax: Tensor, features: int) -> Tensor:
    """``scale * clamp(round_half_even(x / scale), qmin, qmax)`` in float32, exactly; LSQ
    gradients (Esser et al., arXiv 1902.08153): straight through inside the range for ``x``,
    ``round(v) - v`` inside and the clamped bound outside for ``scale``, the latter scaled by
    ``1 / sqrt(features * max|q|)``. ``scale`` broadcasts against ``x``."""
    n = torch.clamp(torch.round(x.detach() / scale.detach()), qmin, qmax)
    hard = scale * n
    g = torch.rsqrt(torch.maximum(qmin.abs(), qmax).clamp_min(1.0) * float(features))
    s = _grad_scale(scale, g)
    v = torch.clamp(x / s, qmin, qmax)
    soft = (v + (torch.round(v) - v).detach()) * s
    return _straight_through(hard.detach(), soft)


def _load(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """``load_state_dict`` with one ValueError line naming what is missing or unexpected."""
    want = set(module.state_dict())
    if set(state) != want:
        raise ValueError(
            f"{type(module).__name__} needs state entries {sorted(want)}, not {sorted(state)}"
        )
    module.load_state_dict(dict(state))


def check_bits(owner: str, bits: object, lo: int) -> int:
    """``bits`` if it is an integer from ``lo`` to 8, else one ValueError line."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= 8:
        raise ValueError(f"{owner} bits must be an integer from {lo} to 8, not {bits!r}")
    return bits


class TernaryQuantizer(nn.Module):
    """Ternary weights ``{-s, 0, +s}`` (TWN, arXiv 1605.04711).

    ``t = sign(w) * 1[|w| > delta]`` with ``sign(0) = +1``; the weight is ``s[o] * t``, with a
    learned scale ``s`` per output channel. ``delta`` is a buffer, one per layer:
    ``SparsitySchedule`` sets it so that a given share of the weights is nonzero. Initialised
    from the layer's initial ``weight``: ``delta = 0.7 * mean|w|`` (TWN's rule) unless given,
    and ``s[o]`` the mean ``|w|`` of channel ``o``'s weights above ``delta`` (of all of them
    when none is). Codes: index ``t + 1`` into ``levels[o] = (-s[o], 0, s[o])``. Gradients:
    straight through to ``w``, ``sum t * dL/dw_q`` to ``s``.
    """

    def __init__(
        self, out_channels: int, weight: Tensor | None = None, delta: float | None = None
    ) -> None:
        super().__init__()
        if delta is None:
            delta = 0.7 * float(weight.detach().abs().mean()) if weight is not None else 0.05
        if not delta >= 0:
            raise ValueError(f"TernaryQuantizer delta must be >= 0, not {delta!r}")
        self.register_buffer("delta", torch.tensor(float(delta)))
        scale = torch.ones(out_channels)
        if weight is not None:
            a = weight.detach().abs().reshape(out_channels, -1)
            above = (a > delta).to(a.dtype)
            count = above.sum(dim=1)
            scale = torch.where(count > 0, (a * above).sum(dim=1) / count.clamp_min(1), a.mean(1))
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.scale = nn.Parameter(scale.to(torch.float32))

    def _ternary(self, weight: Tensor) -> Tensor:
        w = weight.detach()
        one, zero = torch.ones_like(w), torch.zeros_like(w)
        return torch.where(w.abs() > self.delta, torch.where(w >= 0, one, -one), zero)

    def forward(self, weight: Tensor) -> Tensor:
        hard = _per_channel_view(self.scale, weight) * self._ternary(weight)
        return _straight_through(hard, weight)

    @torch.no_grad()
    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(index, levels)``: int64 of ``weight``'s shape in ``{0, 1, 2}``, float32 (O, 3)."""
        index = (self._ternary(weight) + 1).to(torch.int64)
        s = self.scale.detach()
        return index, torch.stack([-s, torch.zeros_like(s), s], dim=1)

    def nonzero(self, weight: Tensor) -> Tensor:
        """The mask of nonzero weights, ``|w| > delta``."""
        return weight.detach().abs() > self.delta

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> TernaryQuantizer:
        if "scale" not in state:
            raise ValueError("TernaryQuantizer needs a 'scale' state entry")
        q = cls(int(state["scale"].numel()), delta=0.0)
        _load(q, state)
        if not float(q.delta) >= 0:
            raise ValueError(f"TernaryQuantizer delta must be >= 0, not {float(q.delta)!r}")
        return q


def _int_range(bits: int, narrow: bool) -> tuple[int, int]:
    return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1


class IntQuantizer(nn.Module):
    """Uniform symmetric k-bit integer weights, one learned scale per output channel.

    ``n = clamp(round_half_even(w / s[o]), qmin, qmax)`` with ``[qmin, qmax] = [-2^(k-1),
    2^(k-1) - 1]`` (``narrow_range=True``: ``qmin = -(2^(k-1) - 1)``), and the weight is
    ``s[o] * n``. ``bits`` from 2 to 8; ``qmin`` and ``qmax`` are buffers, so the state dict
    alone rebuilds the quantizer. ``s`` starts at ``max|w[o]| / qmax`` of the initial weight and
    learns with LSQ's gradient (arXiv 1902.08153); it must stay positive. Codes: index
    ``n - qmin`` into ``levels[o, j] = s[o] * (qmin + j)``. ``quantizer="int"`` gives the full
    range; for a narrow one, set ``layer.quantizer = IntQuantizer(o, k, layer.weight,
    narrow_range=True)``.
    """

    def __init__(
        self,
        out_channels: int,
        bits: int,
        weight: Tensor | None = None,
        narrow_range: bool = False,
    ) -> None:
        super().__init__()
        bits = check_bits("IntQuantizer", bits, 2)
        lo, hi = _int_range(bits, narrow_range)
        self.register_buffer("qmin", torch.tensor(float(lo)))
        self.register_buffer("qmax", torch.tensor(float(hi)))
        scale = torch.ones(out_channels)
        if weight is not None:
            peak = weight.detach().abs().reshape(out_channels, -1).amax(dim=1) / hi
            scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        self.scale = nn.Parameter(scale.to(torch.float32))

    def forward(self, weight: Tensor) -> Tensor:
        s = _per_channel_view(self.scale, weight)
        return _lsq(weight, s, self.qmin, self.qmax, weight[0].numel())

    @torch.no_grad()
    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(index, levels)``: int64 of ``weight``'s shape, float32 (O, qmax - qmin + 1)."""
        s = _per_channel_view(self.scale.detach(), weight)
        n = torch.clamp(torch.round(weight.detach() / s), self.qmin, self.qmax)
        lo, hi = int(self.qmin), int(self.qmax)
        steps = torch.arange(lo, hi + 1, dtype=torch.float32)
        levels = self.scale.detach()[:, None] * steps[None, :]
        return (n - self.qmin).to(torch.int64), levels

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> IntQuantizer:
        if not {"scale", "qmin", "qmax"} <= set(state):
            raise ValueError("IntQuantizer needs 'scale', 'qmin' and 'qmax' state entries")
        lo, hi = float(state["qmin"]), float(state["qmax"])
        bits = int(hi + 1).bit_length() if math.isfinite(hi) and hi >= 1 else 0
        ok = 2 <= bits <= 8 and hi == 2 ** (bits - 1) - 1 and lo in (-hi, -hi - 1)
        if not ok:
            raise ValueError(
                f"IntQuantizer codes [{lo:g}, {hi:g}] are not a signed k-bit range for k"
                " from 2 to 8"
            )
        q = cls(int(state["scale"].numel()), bits, narrow_range=lo == -hi)
        _load(q, state)
        return q


class MultiBitQuantizer(nn.Module):
    """AMQ multi-bit weights (Xu et al., arXiv 1802.00150): ``w ~ sum_i alpha[i, o] * b_i``
    with ``b_i`` in ``{-1, +1}`` and ``K = bits`` planes (1 to 8).

    Each forward finds the planes greedily with the current ``alpha``: ``b_0 = sign(w)``
    (``sign(0) = +1``), ``r = w - alpha[0] * b_0``, ``b_1 = sign(r)``, ... ``alpha`` (K, O) is
    learned, initialised greedily from the initial weight (``alpha[i, o]`` the mean ``|r|`` of
    the channel's residual before plane ``i``). Codes: index ``n = sum_i 2^i * 1[b_i = +1]``
    into ``levels[o, n] = sum_i alpha[i, o] * (2 * bit_i(n) - 1)``, summed from plane 0 up in
    float32 as ``forward`` does. Gradients: straight through to ``w``, ``sum b_i * dL/dw_q``
    to ``alpha[i]``.
    """

    def __init__(self, out_channels: int, bits: int, weight: Tensor | None = None) -> None:
        super().__init__()
        bits = check_bits("MultiBitQuantizer", bits, 1)
        alpha = torch.tensor([0.5**i for i in range(bits)])[:, None].repeat(1, out_channels)
        if weight is not None:
            r = weight.detach().reshape(out_channels, -1).to(torch.float32)
            rows = []
            for _ in range(bits):
                a = r.abs().mean(dim=1)
                rows.append(a)
                r = r - a[:, None] * torch.where(r >= 0, 1.0, -1.0)
            alpha = torch.stack(rows)
        self.alpha = nn.Parameter(alpha.to(torch.float32))

    def _planes(self, weight: Tensor) -> list[Tensor]:
        r = weight.detach()
        one = torch.ones_like(r)
        planes: list[Tensor] = []
        for i in range(self.alpha.shape[0]):
            b = torch.where(r >= 0, one, -one)
            planes.append(b)
            r = r - _per_channel_view(self.alpha[i].detach(), weight) * b
        return planes

    def forward(self, weight: Tensor) -> Tensor:
        hard = torch.zeros_like(weight)
        for i, b in enumerate(self._planes(weight)):
            hard = hard + _per_channel_view(self.alpha[i], weight) * b
        return _straight_through(hard, weight)

    @torch.no_grad()
    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(index, levels)``: int64 of ``weight``'s shape, float32 (O, 2^K)."""
        k, o = self.alpha.shape
        index = torch.zeros(weight.shape, dtype=torch.int64)
        for i, b in enumerate(self._planes(weight)):
            index += (b > 0).to(torch.int64) << i
        n = torch.arange(2**k)
        levels = torch.zeros(o, 2**k)
        for i in range(k):
            sign = ((n >> i) & 1).to(torch.float32) * 2 - 1
            levels = levels + self.alpha.detach()[i][:, None] * sign[None, :]
        return index, levels

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> MultiBitQuantizer:
        alpha = state.get("alpha")
        if alpha is None or alpha.dim() != 2 or not 1 <= alpha.shape[0] <= 8:
            shape = None if alpha is None else tuple(alpha.shape)
            raise ValueError(f"MultiBitQuantizer needs an 'alpha' of shape (K, O), K from 1 to"
                             f" 8, not {shape}")  # fmt: skip
        q = cls(int(alpha.shape[1]), int(alpha.shape[0]))
        _load(q, state)
        return q


CODEBOOK_MAX = 256
"""The most levels a ``CodebookQuantizer`` row holds (8-bit indices)."""


def nearest_index(x: Tensor, levels: Tensor) -> Tensor:
    """The index of each ``x[o, n]``'s nearest level in ``levels[o]`` (sorted ascending per row,
    duplicates allowed), ties to the lower index: exactly ``(x[..., None] - levels[:, None,
    :]).abs().argmin(-1)`` in float32, in O(log L) per value. ``searchsorted`` gives the two
    neighbours, whose smaller distance ``d`` is the row's minimum (a float32 distance does not
    grow towards ``x`` from either side); a binary search then finds the first index whose
    distance is at most ``d`` (a run ending at the lower neighbour or starting at the upper one:
    equal levels, or distinct levels whose distances round to one float). ``x`` (O, N) and
    ``levels`` (O, L) are float32; the result is int64 (O, N)."""
    x, levels = x.contiguous(), levels.contiguous()
    count = levels.shape[1]
    above = torch.searchsorted(levels, x)
    lo = torch.clamp(above - 1, min=0)
    hi = torch.clamp(above, max=count - 1)
    d_lo = (x - levels.gather(1, lo)).abs()
    d_hi = (x - levels.gather(1, hi)).abs()
    best = torch.minimum(d_lo, d_hi)
    first = torch.zeros_like(lo)
    last = torch.where(d_lo <= d_hi, lo, hi)  # its distance is ``best``
    steps = 0
    n = count
    while n > 0:  # ceil(log2(count + 1)) halvings close [first, last]
        steps = steps + 1  # (TorchScript takes no augmented assignment here)
        n = n // 2
    for _ in range(steps):
        mid = (first + last) >> 1
        near = (x - levels.gather(1, mid)).abs() <= best
        last = torch.where(near, mid, last)
        first = torch.where(near, first, mid + 1)
    return last


class CodebookQuantizer(nn.Module):
    """Weights on a codebook of ``L`` learned levels per output channel, ``L`` from 2 to 256.

    ``levels`` (O, L) is a parameter, sorted ascending per row when set (an optimizer step may
    reorder it: ``forward`` and ``codes`` use the row sorted, so the index is always into sorted
    levels); a row may repeat a level. Each weight takes its nearest level, ties to the lower
    index (``nearest_index``: the argmin of ``|w - levels[o]|`` in float32). One form for AMQ,
    refined and greedy multi-bit weights (the row is the ``2^K`` sums ``sum_i ±alpha_i``, see
    ``bnc.quantize.weights``) and k-means codebooks (Deep Compression's weight sharing).
    Initialised from ``levels`` when given, else from ``weight``: ``L`` levels evenly spaced
    from the row's minimum to its maximum, else from -1 to 1. Codes: the index into
    ``levels[o]`` sorted. Gradients: straight through to ``w``, the sum of ``dL/dw_q`` over the
    weights at a level to that level (the gather's gradient), so the codebook fine-tunes.
    """

    def __init__(
        self,
        out_channels: int,
        count: int,
        weight: Tensor | None = None,
        levels: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(count, int) or isinstance(count, bool) or not 2 <= count <= CODEBOOK_MAX:
            raise ValueError(
                f"CodebookQuantizer count must be an integer from 2 to {CODEBOOK_MAX}, not"
                f" {count!r}"
            )
        if levels is not None:
            if tuple(levels.shape) != (out_channels, count):
                raise ValueError(
                    f"CodebookQuantizer levels must have shape ({out_channels}, {count}), not"
                    f" {tuple(levels.shape)}"
                )
            init = levels.detach().to(torch.float32)
        elif weight is not None:
            w = weight.detach().reshape(out_channels, -1).to(torch.float32)
            lo, hi = w.amin(dim=1), w.amax(dim=1)
            steps = torch.linspace(0.0, 1.0, count)
            init = lo[:, None] + (hi - lo)[:, None] * steps[None, :]
        else:
            init = torch.linspace(-1.0, 1.0, count).repeat(out_channels, 1)
        if not torch.isfinite(init).all():
            raise ValueError("CodebookQuantizer levels must be finite")
        self.levels = nn.Parameter(torch.sort(init, dim=1)[0].contiguous())

    def _index(self, weight: Tensor, levels: Tensor) -> Tensor:
        flat = weight.detach().reshape(weight.shape[0], -1)
        return nearest_index(flat, levels.detach())

    def forward(self, weight: Tensor) -> Tensor:
        levels = torch.sort(self.levels, dim=1)[0]
        hard = levels.gather(1, self._index(weight, levels)).reshape(weight.shape)
        return _straight_through(hard, weight)

    @torch.no_grad()
    def codes(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """``(index, levels)``: int64 of ``weight``'s shape, float32 (O, L) sorted per row."""
        levels = torch.sort(self.levels.detach(), dim=1)[0]
        return self._index(weight, levels).reshape(weight.shape), levels

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> CodebookQuantizer:
        levels = state.get("levels")
        if levels is None or levels.dim() != 2 or not 2 <= levels.shape[1] <= CODEBOOK_MAX:
            shape = None if levels is None else tuple(levels.shape)
            raise ValueError(
                f"CodebookQuantizer needs 'levels' of shape (O, L), L from 2 to {CODEBOOK_MAX},"
                f" not {shape}"
            )
        if not torch.isfinite(levels).all():
            raise ValueError("CodebookQuantizer levels must be finite")
        q = cls(int(levels.shape[0]), int(levels.shape[1]))
        _load(q, state)
        return q


# --- k-bit activations --------------------------------------------------------------------


def act_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The codes ``[qmin, qmax]`` of a k-bit activation."""
    if not signed:
        return 0, 2**bits - 1
    return _int_range(bits, narrow)


class ActQuantizer(nn.Module):
    """A k-bit activation with a learned scale (LSQ, arXiv 1902.08153), zero point 0.

    ``q = clamp(round_half_even(x / scale), qmin, qmax)`` in float32 and the layer passes on
    ``q * scale`` exactly (straight-through gradient inside the range). Unsigned: ``[0,
    2^bits - 1]`` (``bits = 1`` gives ``{0, 1}``); signed: ``[-2^(bits-1), 2^(bits-1) - 1]``,
    ``narrow=True`` dropping the most negative code. ``bits`` from 1 to 8 (signed from 2).
    ``scale`` defaults to ``4 / 2^bits`` (about ±2 signed, [0, 4) unsigned: a BatchNorm
    output's range) and must stay positive; ``qmin`` and ``qmax`` are buffers. Use it after a
    BatchNorm in place of ``Sign``, or as ``ActQuantizer(8, signed=True)`` on a residual
    stream ``x = q(bn(conv(sign(x))) + x)``. Compiled as ``Quantize`` (a multi-threshold or a
    requantization after the passes).
    """

    def __init__(
        self, bits: int, signed: bool = False, narrow: bool = False, scale: float | None = None
    ) -> None:
        super().__init__()
        bits = check_bits("ActQuantizer", bits, 1)
        if narrow and not signed:
            raise ValueError("ActQuantizer narrow=True applies to signed activations only")
        if signed and bits < 2:
            raise ValueError("ActQuantizer bits must be at least 2 when signed, not 1")
        scale = 4.0 / 2**bits if scale is None else scale
        if not (isinstance(scale, float | int) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"ActQuantizer scale must be a positive number, not {scale!r}")
        lo, hi = act_range(bits, signed, narrow)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.register_buffer("qmin", torch.tensor(float(lo)))
        self.register_buffer("qmax", torch.tensor(float(hi)))

    def forward(self, x: Tensor) -> Tensor:
        return _lsq(x, self.scale, self.qmin, self.qmax, x[0].numel())

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> ActQuantizer:
        """Rebuilt from ``scale``, ``qmin`` and ``qmax`` as saved (not validated: the
        compiler checks the range and the scale and names the layer)."""
        q = cls(2)
        _load(q, state)
        return q
