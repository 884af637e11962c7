"""Weight quantization: the levels ``bnc quantize`` gives a float layer's weight (DESIGN §2.5).

Every function takes a float weight ``w`` of shape (O, ...), works per output channel (a row of
``w`` flattened to (O, N)) and is deterministic. ``importance`` weighs each weight's squared
error: None (all 1), ``"magnitude"`` (``|w|``) or a tensor of ``w``'s shape, finite and >= 0
(a Hessian-diagonal estimate, say); a row whose importance sums to 0 weighs its weights
equally. The error of a reconstruction ``ŵ`` is ``E = sum h * d^2`` per row, ``d = |w - ŵ|``
computed in float32 (the distance ``nearest_index`` minimises, so the nearest-level assignment
never has a larger ``E`` than another choice among the same levels), summed in float64;
``relative_error`` is ``sqrt(sum E / sum h w^2)`` over the layer.

Multi-bit weights ``w ~ sum_i alpha[i, o] * b_i``, ``K = bits`` planes ``b_i`` of ±1:

* ``greedy``: ``b_i = sign(r)`` (``sign(0) = +1``), ``alpha_i`` the (weighted) mean ``|r|``,
  ``r -= alpha_i * b_i``, from ``r = w``;
* ``refined``: greedy's planes, every ``alpha`` re-solved by (weighted) least squares;
* ``alternating`` (AMQ, Xu et al., arXiv 1802.00150): from ``refined``, each weight takes the
  nearest of the ``2^K`` levels, then least squares for ``alpha`` given those planes, repeated
  while the error decreases.

Each returns ``alphas`` (K, O), float32 and >= 0 (a negative least-squares ``alpha_i`` is
negated together with its plane), and ``planes`` (K, *w.shape), float32 ±1. Their *own*
reconstruction is ``planes_value(alphas, planes)``; a deployed layer (``quantizer_for`` → a
``CodebookQuantizer`` holding ``levels_of(alphas)``) gives each weight its nearest level
instead (``nearest``), which is never worse. The two differ for ``greedy`` and ``refined``
(greedy's planes are the nearest ones where each ``alpha_i`` is at least the sum of the later
ones, not in general; measured, the nearest levels cut greedy's 3-bit error on Laplace weights
from 0.383 to 0.365 and refined's from 0.362 to 0.331); ``alternating`` returns the nearest
planes. A least-squares step is kept per row only
where it does not increase that row's error, so ``E(alternating) <= E(nearest, refined) <=
E(own, refined) <= E(own, greedy)`` holds exactly, row by row.

Also ``int_uniform`` (k-bit integer levels, an exact search of the scale), ``ternary`` (an
exact search of the threshold) and ``kmeans`` (one codebook for the layer); ``quantizer_for``
turns any method's result into a ready ``bnc.nn`` weight quantizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnc.nn.quant import (
    CODEBOOK_MAX,
    CodebookQuantizer,
    IntQuantizer,
    TernaryQuantizer,
    check_bits,
    nearest_index,
)

METHODS = ("amq", "refined", "greedy", "kmeans", "int", "ternary")
"""``quantizer_for`` methods: AMQ (``alternating``), ``refined``, ``greedy``, k-means
codebooks, k-bit integers, ternary."""

ALTERNATING_ITERATIONS = 100
"""The most alternating cycles. A cycle is one nearest-level pass (``O(N log 2^K)``) and a
(K, K) solve per row. Measured on (64, 576) Gaussian and Laplace weights, with and without
magnitude importance, the error stops decreasing after 10 to 20 cycles at 2 bits, 23 to 32 at
3 bits and 46 to 54 at 4 bits; at 6 and 8 bits 99 % of the gain comes within 21 to 73 cycles.
Xu et al. stop after two cycles, which here keeps only 40 to 65 % of the gain at 3 and 4 bits;
100 reaches the end at 1 to 4 bits and bounds the slow tail at 6 to 8."""

KMEANS_ITERATIONS = 100
"""The most Lloyd iterations of ``kmeans``; it stops earlier when the objective no longer
decreases (the assignment is then stable). On (64, 576) Gaussian and Laplace weights codebooks
of up to 16 levels are within 0.3 % of their converged error after 100 iterations; 64 levels
from the linear start converge slowly (9 to 15 % above the error at 400 iterations)."""

Importance = str | Tensor | None

_CHUNK = 1 << 22  # elements of one row chunk's candidate table (int_uniform)


# --- arguments ------------------------------------------------------------------------------


def _rows(w: object, who: str) -> Tensor:
    """``w`` as float32 rows (O, N), or one ValueError line."""
    if not isinstance(w, Tensor) or not w.is_floating_point() or w.dim() < 2 or w.numel() == 0:
        what = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(
            f"{who}: the weight must be a non-empty float tensor of shape (O, ...) with at least"
            f" 2 dimensions, not {what}"
        )
    rows = w.detach().to(torch.float32).reshape(w.shape[0], -1).contiguous()
    if not torch.isfinite(rows).all():
        raise ValueError(f"{who}: the weight has NaN or infinite values")
    return rows


def _weights(w: Tensor, rows: Tensor, importance: Importance, who: str) -> Tensor:
    """The importance ``h`` (O, N) float64, a row summing to 0 replaced by ones."""
    if importance is None:
        return torch.ones(rows.shape, dtype=torch.float64)
    if isinstance(importance, str) and importance == "magnitude":
        h = rows.abs().to(torch.float64)
    elif isinstance(importance, Tensor) and tuple(importance.shape) == tuple(w.shape):
        h = importance.detach().to(torch.float64).reshape(rows.shape)
        if not (torch.isfinite(h).all() and (h >= 0).all()):
            raise ValueError(f"{who}: importance must be finite and >= 0")
    else:
        what = tuple(importance.shape) if isinstance(importance, Tensor) else repr(importance)
        raise ValueError(
            f"{who}: importance must be None, 'magnitude' or a tensor of the weight's shape"
            f" {tuple(w.shape)}, not {what}"
        )
    empty = h.sum(dim=1) <= 0
    return torch.where(empty[:, None], torch.ones_like(h), h)


def _iterations(n: object, who: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{who}: iterations must be an integer >= 0, not {n!r}")
    return n


def _count(n: object, who: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= CODEBOOK_MAX:
        raise ValueError(f"{who}: codebook must be an integer from 2 to {CODEBOOK_MAX}, not {n!r}")
    return n


# --- errors and reconstructions ------------------------------------------------------------


def _row_error(rows: Tensor, approx: Tensor, h: Tensor) -> Tensor:
    """``sum h * |w - ŵ|^2`` per row (O,), float64, the distance taken in float32."""
    d = (rows - approx).abs().to(torch.float64)
    return (h * d * d).sum(dim=1)


def _relative(rows: Tensor, approx: Tensor, h: Tensor) -> float:
    err = float(_row_error(rows, approx, h).sum())
    norm = float((h * rows.to(torch.float64) ** 2).sum(dim=1).sum())
    if norm == 0:
        return 0.0 if err == 0 else math.inf
    return math.sqrt(err / norm)


def _as_rows(levels: Tensor, o: int) -> Tensor:
    """Levels (O, L) or one shared (L,) row, float32 and sorted per row."""
    lv = levels.detach().to(torch.float32)
    lv = lv.expand(o, -1) if lv.dim() == 1 else lv
    if lv.dim() != 2 or lv.shape[0] != o or lv.shape[1] < 1:
        raise ValueError(f"levels must have shape ({o}, L) or (L,), not {tuple(levels.shape)}")
    return torch.sort(lv, dim=1)[0].contiguous()


def nearest(w: Tensor, levels: Tensor) -> Tensor:
    """``w`` with each weight replaced by its nearest level (``CodebookQuantizer``'s rule);
    ``levels`` (O, L) per row or (L,) shared by every row."""
    rows = _rows(w, "nearest")
    lv = _as_rows(levels, rows.shape[0])
    return lv.gather(1, nearest_index(rows, lv)).reshape(w.shape)


def relative_error(w: Tensor, levels: Tensor, importance: Importance = None) -> float:
    """``||W - Ŵ|| / ||W||`` (importance-weighted when given) with ``Ŵ = nearest(w, levels)``;
    0 for an all-zero ``w``."""
    rows = _rows(w, "relative_error")
    h = _weights(w, rows, importance, "relative_error")
    lv = _as_rows(levels, rows.shape[0])
    return _relative(rows, lv.gather(1, nearest_index(rows, lv)), h)


def reconstruction_error(w: Tensor, approx: Tensor, importance: Importance = None) -> float:
    """``||W - Ŵ|| / ||W||`` (importance-weighted when given) for any reconstruction ``Ŵ``."""
    rows = _rows(w, "reconstruction_error")
    if tuple(approx.shape) != tuple(w.shape):
        raise ValueError(
            f"reconstruction_error: the reconstruction has shape {tuple(approx.shape)}, the"
            f" weight {tuple(w.shape)}"
        )
    h = _weights(w, rows, importance, "reconstruction_error")
    return _relative(rows, approx.detach().to(torch.float32).reshape(rows.shape), h)


# --- multi-bit planes ------------------------------------------------------------------------


def _table(alphas: Tensor) -> Tensor:
    """``table[o, n] = sum_i alphas[i, o] * (2 * bit_i(n) - 1)`` (O, 2^K), float32, summed from
    plane 0 up (``MultiBitQuantizer.codes``' order)."""
    k, o = alphas.shape
    n = torch.arange(2**k)
    table = torch.zeros(o, 2**k)
    for i in range(k):
        sign = ((n >> i) & 1).to(torch.float32) * 2 - 1
        table = table + alphas[i][:, None] * sign[None, :]
    return table


def _sorted_table(alphas: Tensor) -> tuple[Tensor, Tensor]:
    """The levels sorted per row and, for each, its plane code ``n``."""
    levels, code = torch.sort(_table(alphas), dim=1, stable=True)
    return levels.contiguous(), code


def levels_of(alphas: Tensor) -> Tensor:
    """The ``2^K`` levels ``sum_i ±alphas[i, o]`` of each row, sorted ascending: (O, 2^K)."""
    a = alphas.detach().to(torch.float32)
    if a.dim() != 2 or not 1 <= a.shape[0] <= 8:
        raise ValueError(f"levels_of: alphas must have shape (K, O), K from 1 to 8, not {a.shape}")
    return _sorted_table(a)[0]


def _code(planes: Tensor) -> Tensor:
    """``n = sum_i 2^i * 1[b_i = +1]`` of planes (K, O, N)."""
    n = torch.zeros(planes.shape[1:], dtype=torch.int64)
    for i, b in enumerate(planes):
        n += (b > 0).to(torch.int64) << i
    return n


def _planes(code: Tensor, k: int) -> Tensor:
    bits = (code[None] >> torch.arange(k)[:, None, None]) & 1
    return bits.to(torch.float32) * 2 - 1


def planes_value(alphas: Tensor, planes: Tensor) -> Tensor:
    """The planes' own reconstruction ``sum_i alphas[i, o] * b_i`` (the float32 level of
    ``levels_of(alphas)`` the planes select), of shape ``planes.shape[1:]``."""
    a = alphas.detach().to(torch.float32)
    if planes.dim() < 3 or planes.shape[:2] != a.shape:
        raise ValueError(
            f"planes_value: planes must have shape ({a.shape[0]}, {a.shape[1]}, ...) for alphas"
            f" of shape {tuple(a.shape)}, not {tuple(planes.shape)}"
        )
    flat = planes.reshape(a.shape[0], a.shape[1], -1)
    return _table(a).gather(1, _code(flat)).reshape(planes.shape[1:])


def _signs(k: int) -> Tensor:
    """``(2 * bit_i(n) - 1)`` for every code ``n``: (2^K, K) float64."""
    n = torch.arange(2**k)
    return (((n[:, None] >> torch.arange(k)[None, :]) & 1) * 2 - 1).to(torch.float64)


def _least_squares(code: Tensor, rows: Tensor, h: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``alpha`` (K, O) minimising ``sum h (w - sum_i alpha_i b_i)^2`` per row given the planes'
    codes (O, N), and the codes with the planes of negative ``alpha_i`` negated (which leaves
    every product unchanged, so ``alpha >= 0``). A weight's planes are its code's signs, so the
    normal equations come from each code's summed ``h`` and ``h w``; float64, solved by
    ``gelsd`` (the minimum-norm solution where planes repeat, as a constant row's do)."""
    o, size = rows.shape[0], 2**k
    mass = torch.zeros(o, size, dtype=torch.float64).scatter_add_(1, code, h)
    moment = torch.zeros(o, size, dtype=torch.float64).scatter_add_(1, code, h * rows.double())
    signs = _signs(k)
    gram = torch.einsum("on,ni,nj->oij", mass, signs, signs)
    rhs = (moment @ signs)[:, :, None]
    alpha = torch.linalg.lstsq(gram, rhs, driver="gelsd").solution[..., 0].T.to(torch.float32)
    flip = ((alpha < 0).to(torch.int64) << torch.arange(k)[:, None]).sum(dim=0)  # (O,)
    return alpha.abs(), code ^ flip[:, None]


def _greedy(rows: Tensor, bits: int, h: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy alphas and the planes' codes; the residual in float64 with the float32 alphas
    returned, so the planes are those of the alphas."""
    r = rows.to(torch.float64)
    total = h.sum(dim=1)
    code = torch.zeros(rows.shape, dtype=torch.int64)
    alphas = []
    for i in range(bits):
        up = r >= 0
        a = ((h * r.abs()).sum(dim=1) / total).to(torch.float32)
        r = r - a.to(torch.float64)[:, None] * torch.where(up, 1.0, -1.0).to(torch.float64)
        code |= up.to(torch.int64) << i
        alphas.append(a)
    return torch.stack(alphas), code


def _refined(rows: Tensor, bits: int, h: Tensor) -> tuple[Tensor, Tensor]:
    alphas, code = _greedy(rows, bits, h)
    before = _row_error(rows, _table(alphas).gather(1, code), h)
    ls_alphas, ls_code = _least_squares(code, rows, h, bits)
    keep = _row_error(rows, _table(ls_alphas).gather(1, ls_code), h) <= before
    return torch.where(keep[None, :], ls_alphas, alphas), torch.where(keep[:, None], ls_code, code)


def _nearest_state(rows: Tensor, alphas: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """The nearest-level codes (O, N) under ``alphas`` and their row errors."""
    levels, code = _sorted_table(alphas)
    index = nearest_index(rows, levels)
    return code.gather(1, index), _row_error(rows, levels.gather(1, index), h)


def greedy(w: Tensor, bits: int, importance: Importance = None) -> tuple[Tensor, Tensor]:
    """Greedy residual binarization: ``(alphas (K, O), planes (K, *w.shape))``."""
    rows = _rows(w, "greedy")
    bits = check_bits("greedy", bits, 1)
    alphas, code = _greedy(rows, bits, _weights(w, rows, importance, "greedy"))
    return alphas, _planes(code, bits).reshape(bits, *w.shape)


def refined(w: Tensor, bits: int, importance: Importance = None) -> tuple[Tensor, Tensor]:
    """Greedy planes with every ``alpha`` re-solved by (weighted) least squares per row (kept
    where it does not increase the row's own error)."""
    rows = _rows(w, "refined")
    bits = check_bits("refined", bits, 1)
    alphas, code = _refined(rows, bits, _weights(w, rows, importance, "refined"))
    return alphas, _planes(code, bits).reshape(bits, *w.shape)


def alternating(
    w: Tensor,
    bits: int,
    importance: Importance = None,
    iterations: int = ALTERNATING_ITERATIONS,
) -> tuple[Tensor, Tensor]:
    """AMQ (arXiv 1802.00150): from ``refined``'s alphas, alternate nearest-level planes and a
    least-squares solve of ``alpha`` given them, at most ``iterations`` cycles. A row takes a
    new ``alpha`` only where its nearest-level error strictly decreases; the cycles stop when no
    row's does. ``planes`` are the nearest-level planes of the returned ``alphas``;
    ``iterations=0`` gives ``refined``'s alphas with nearest planes."""
    rows = _rows(w, "alternating")
    bits = check_bits("alternating", bits, 1)
    iterations = _iterations(iterations, "alternating")
    h = _weights(w, rows, importance, "alternating")
    alphas, _ = _refined(rows, bits, h)
    code, error = _nearest_state(rows, alphas, h)
    for _ in range(iterations):
        new_alphas, _ = _least_squares(code, rows, h, bits)
        new_code, new_error = _nearest_state(rows, new_alphas, h)
        better = new_error < error
        if not bool(better.any()):
            break
        alphas = torch.where(better[None, :], new_alphas, alphas)
        code = torch.where(better[:, None], new_code, code)
        error = torch.where(better, new_error, error)
    return alphas, _planes(code, bits).reshape(bits, *w.shape)


# --- integers, ternary, codebooks ------------------------------------------------------------


def int_uniform(w: Tensor, bits: int, importance: Importance = None) -> Tensor:
    """The scale (O,) of symmetric k-bit integer levels ``s * [-2^(k-1) .. 2^(k-1) - 1]`` that
    minimises the row's (weighted) squared error, weights rounded to the nearest level and
    clamped as ``IntQuantizer`` does.

    The search is exact over the scales that matter: as ``s`` falls, a weight's code steps one
    away from 0 at ``s = |w| / (j + 1/2)`` (j = 0, 1, ... until the clamp), and between two such
    points the codes ``n`` are fixed, where the best scale is the least-squares one,
    ``sum h w n / sum h n^2``. The error is the lower envelope of those quadratics, so its
    minimum is the best of these candidates (N * 2^(k-1) per row, swept in order with running
    sums). An all-zero row gets scale 1."""
    rows = _rows(w, "int_uniform")
    bits = check_bits("int_uniform", bits, 2)
    h = _weights(w, rows, importance, "int_uniform")
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    o, n = rows.shape
    steps = -lo
    j = torch.arange(steps, dtype=torch.float64)
    scales = torch.empty(o, dtype=torch.float64)
    per = max(1, _CHUNK // (n * steps))
    for start in range(0, o, per):
        x = rows[start : start + per].to(torch.float64)
        hh = h[start : start + per]
        a = x.abs()[:, :, None]
        reach = torch.where(x < 0, float(-lo), float(hi))[:, :, None]  # |n| at the clamp
        valid = (a > 0) & (j[None, None, :] < reach)
        at = torch.where(valid, a / (j + 0.5), -1.0).reshape(len(x), -1)
        d1 = torch.where(valid, hh[:, :, None] * a, 0.0).reshape(len(x), -1)
        d2 = torch.where(valid, hh[:, :, None] * (2 * j + 1), 0.0).reshape(len(x), -1)
        order = torch.sort(at, dim=1, descending=True, stable=True)[1]
        s1 = torch.cumsum(d1.gather(1, order), dim=1)
        s2 = torch.cumsum(d2.gather(1, order), dim=1)
        gain = torch.where(s2 > 0, s1 * s1 / s2.clamp_min(1e-300), 0.0)
        best = gain.argmax(dim=1, keepdim=True)
        num, den = s1.gather(1, best)[:, 0], s2.gather(1, best)[:, 0]
        peak = x.abs().amax(dim=1) / hi
        fallback = torch.where(peak > 0, peak, torch.ones_like(peak))
        scales[start : start + per] = torch.where(den > 0, num / den.clamp_min(1e-300), fallback)
    return scales.to(torch.float32)


def _support_sums(rows: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each row's ``|w|`` sorted descending, the running sums ``sum h|w|`` and ``sum h`` over
    the largest ``k``, and the running ``(sum h|w|)^2 / sum h`` (the error a support of the
    largest ``k`` removes, with its least-squares scale)."""
    a, order = torch.sort(rows.abs().to(torch.float64), dim=1, descending=True, stable=True)
    hs = h.gather(1, order)
    s1, s2 = torch.cumsum(hs * a, dim=1), torch.cumsum(hs, dim=1)
    gain = torch.where(s2 > 0, s1 * s1 / s2.clamp_min(1e-300), 0.0)
    return a, s1, s2, gain


def _ends(a: Tensor) -> Tensor:
    """Where a support may end: after a nonzero ``|w|`` that the next one is below."""
    nxt = torch.cat([a[..., 1:], torch.full_like(a[..., :1], -1.0)], dim=-1)
    return (a > 0) & (a > nxt)


def ternary(
    w: Tensor, importance: Importance = None, shared_delta: bool = False
) -> tuple[Tensor, Tensor]:
    """``(delta (O,), scale (O,))`` of ternary weights ``s * sign(w) * 1[|w| > delta]`` that
    minimise the (weighted) squared error, per row, or with one ``delta`` for the whole layer
    (``shared_delta=True``: what ``TernaryQuantizer``, one threshold per layer, holds).

    For a given support the best scale is its (weighted) mean ``|w|``, and the best support for
    a given scale is ``|w| > s/2``, a set of the largest ``|w|``: so the search over supports of
    the ``k`` largest ``|w|`` (every ``k``, sorted ``|w|`` and running sums) is exact, and
    includes TWN's ``delta = 0.7 * mean|w|``. ``delta`` is the largest ``|w|`` left out (0 when
    none is), so the quantizer's ``|w| > delta`` selects the support exactly; a row left all
    zero gets scale 1."""
    rows = _rows(w, "ternary")
    h = _weights(w, rows, importance, "ternary")
    a, s1, s2, gain = _support_sums(rows, h)
    o, n = rows.shape
    ends = _ends(a)
    if shared_delta:
        # One delta for all rows: joining the layer's |w| in descending order, each weight
        # changes only its own row's gain; the best delta maximises the summed gain.
        step = gain - torch.cat([torch.zeros(o, 1, dtype=gain.dtype), gain[:, :-1]], dim=1)
        flat, order = torch.sort(a.reshape(-1), descending=True, stable=True)
        total = torch.cumsum(step.reshape(-1)[order], dim=0)
        total = torch.where(_ends(flat), total, -1.0)
        k = int(total.argmax())
        if not bool(total[k] > 0):
            delta = float(flat[0])  # no support removes any error: all weights 0
        else:
            delta = float(flat[k + 1]) if k + 1 < flat.numel() else 0.0
        count = (a > delta).sum(dim=1)
        deltas = torch.full((o,), delta, dtype=torch.float64)
    else:
        best = torch.where(ends, gain, -1.0).argmax(dim=1)
        found = ends.gather(1, best[:, None])[:, 0] & (gain.gather(1, best[:, None])[:, 0] > 0)
        count = torch.where(found, best + 1, 0)
        after = torch.cat([a, torch.zeros(o, 1, dtype=a.dtype)], dim=1)
        deltas = torch.where(found, after.gather(1, count[:, None])[:, 0], a[:, 0])
    last = (count - 1).clamp_min(0)[:, None]
    num, den = s1.gather(1, last)[:, 0], s2.gather(1, last)[:, 0]
    scale = torch.where((count > 0) & (den > 0), num / den.clamp_min(1e-300), 1.0)
    return deltas.to(torch.float32), scale.to(torch.float32)


def kmeans(
    w: Tensor,
    levels_count: int,
    importance: Importance = None,
    iterations: int = KMEANS_ITERATIONS,
) -> Tensor:
    """One codebook of ``levels_count`` levels (sorted, float32) for the whole layer: Lloyd's
    k-means over every weight (Deep Compression's weight sharing), started from levels evenly
    spaced from the layer's minimum to its maximum. Each iteration gives every weight its
    nearest level and moves each level to the (weighted) mean of its weights (a level with no
    weight, or none of nonzero importance, stays); it stops when the objective ``sum h d^2``
    no longer decreases, or after ``iterations``, so the objective never increases. Levels may
    repeat (a constant layer)."""
    rows = _rows(w, "kmeans")
    count = _count(levels_count, "kmeans")
    iterations = _iterations(iterations, "kmeans")
    h = _weights(w, rows, importance, "kmeans").reshape(1, -1)
    x = rows.reshape(1, -1)
    lo, hi = x.min(), x.max()
    levels = (lo + (hi - lo) * torch.linspace(0.0, 1.0, count))[None].contiguous()
    index = nearest_index(x, levels)
    error = float(_row_error(x, levels.gather(1, index), h)[0])
    xd = x.to(torch.float64)[0]
    for _ in range(iterations):
        mass = torch.bincount(index[0], weights=h[0], minlength=count)
        moment = torch.bincount(index[0], weights=h[0] * xd, minlength=count)
        moved = torch.where(mass > 0, moment / mass.clamp_min(1e-300), levels[0].to(torch.float64))
        new = torch.sort(moved.to(torch.float32))[0][None].contiguous()
        new_index = nearest_index(x, new)
        new_error = float(_row_error(x, new.gather(1, new_index), h)[0])
        if not new_error < error:
            break
        levels, index, error = new, new_index, new_error
    return levels[0]


# --- the entry point ------------------------------------------------------------------------


def _planes_method(method: str) -> Callable[[Tensor, int, Importance], tuple[Tensor, Tensor]]:
    return {"amq": alternating, "refined": refined, "greedy": greedy}[method]


def _method(method: object, bits: object, codebook: object) -> str:
    """The method to run: ``"kmeans"`` when a codebook is given, else ``method`` checked."""
    if method not in METHODS:
        raise ValueError(
            f"quantizer_for: method must be one of {', '.join(map(repr, METHODS))}, not {method!r}"
        )
    if codebook is not None:
        _count(codebook, "quantizer_for")
        return "kmeans"
    if method == "ternary" and bits not in (None, 2):
        raise ValueError(f"quantizer_for 'ternary': bits must be 2 or None, not {bits!r}")
    return str(method)


def quantizer_for(
    w: Tensor,
    method: str,
    bits: int | None,
    importance: Importance = None,
    codebook: int | None = None,
) -> nn.Module:
    """A ready ``bnc.nn`` weight quantizer for ``w`` by ``method`` (``METHODS``):

    * ``"amq"`` (``alternating``), ``"refined"``, ``"greedy"``: a ``CodebookQuantizer`` of the
      ``2^bits`` levels ``levels_of(alphas)``, bits 1 to 8 (the layer takes each weight's
      nearest level, never worse than the method's own planes);
    * ``"kmeans"``, or any method with ``codebook=K`` (2 to 256; it replaces the method and
      ``bits``, as ``bnc quantize --codebook`` does): a ``CodebookQuantizer`` holding the
      layer's k-means codebook of ``K`` levels (``2^bits`` without a codebook) in every row;
      fine-tuning then moves each row's copy on its own;
    * ``"int"``: an ``IntQuantizer`` (bits 2 to 8, full range) with ``int_uniform``'s scale, so
      its codes are exactly ``scale * [-2^(k-1) .. 2^(k-1) - 1]``;
    * ``"ternary"`` (bits 2 or None): a ``TernaryQuantizer`` with ``ternary``'s one threshold
      for the layer (``shared_delta=True``) and its per-row scales.
    """
    method = _method(method, bits, codebook)
    rows = _rows(w, f"quantizer_for {method!r}")
    o = rows.shape[0]
    if method in ("amq", "refined", "greedy"):
        b = check_bits(f"quantizer_for {method!r}", bits, 1)
        alphas, _ = _planes_method(method)(w, b, importance)
        return CodebookQuantizer(o, 2**b, levels=levels_of(alphas))
    if method == "kmeans":
        count = codebook or 2 ** check_bits("quantizer_for 'kmeans'", bits, 1)
        levels = kmeans(w, count, importance)
        return CodebookQuantizer(o, count, levels=levels.expand(o, count))
    if method == "int":
        b = check_bits("quantizer_for 'int'", bits, 2)
        q: nn.Module = IntQuantizer(o, b)
        with torch.no_grad():
            q.scale.copy_(int_uniform(w, b, importance))
        return q
    delta, scale = ternary(w, importance, shared_delta=True)
    q = TernaryQuantizer(o, delta=float(delta[0]))
    with torch.no_grad():
        q.scale.copy_(scale)
    return q


def reconstruction(
    w: Tensor,
    method: str,
    bits: int | None,
    importance: Importance = None,
    codebook: int | None = None,
) -> Tensor:
    """``method``'s own reconstruction of ``w``: for ``"greedy"`` and ``"refined"`` the value
    of their own planes (``planes_value``), for the others the weights of ``quantizer_for``'s
    quantizer (the deployed ones; for greedy and refined those are ``nearest``, at most as
    far from ``w``)."""
    method = _method(method, bits, codebook)
    if method in ("greedy", "refined"):
        b = check_bits(f"reconstruction {method!r}", bits, 1)
        return planes_value(*_planes_method(method)(w, b, importance))
    q = quantizer_for(w, method, bits, importance, codebook)
    with torch.no_grad():
        return q(w.detach().to(torch.float32))
