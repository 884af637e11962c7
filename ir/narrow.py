"""Narrow thresholds: the fewest-bit integer test that decides exactly like a wide one.

A ``Threshold`` channel tests ``t*T + s*S + c >= 0`` with coefficients of up to 52 bits
(``plane_precision``), which costs wide multipliers in hardware. But T and S only take values
in a small box: with ``n`` taps, ``m`` of them with ``b = 1``, and per-tap values in
``[lo, hi]`` (0, a padded tap, included), ``S`` is a sum over the ``m`` taps and ``T - S``
one over the other ``n - m``. ``narrow`` finds ``(t', s', c')`` with as few bits as it can
that give the same decision on every point of that box, so it is exact on every input, at
every border position (a border window's points lie in the same box).

Method, for ``s != 0`` (mirror S when ``s < 0``): the test is monotone in S, so for each T it
is ``S >= g(T)``, and agreement on the box is agreement at the two points around ``g(T)``
clamped to the S range at that T. For candidate ``(t', s')`` (the original coefficients
shifted right by k bits, largest k first) those points bound ``c'`` to an interval; the first
non-empty interval wins. ``k = 0`` always works, so the search ends.
"""

from __future__ import annotations

import numpy as np


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-a) // b)


def narrow(t: int, s: int, c: int, n: int, m: int, lo: int, hi: int) -> tuple[int, int, int]:
    """Small ``(t', s', c')`` deciding ``t*T + s*S + c >= 0`` exactly on the box.

    ``n`` taps, ``m`` of them in S, per-tap values in ``[lo, hi]`` with ``lo <= 0 <= hi``."""
    assert lo <= 0 <= hi and 0 <= m <= n
    if s == 0:
        if t == 0:
            return 0, 0, 0 if c >= 0 else -1
        # A test on T alone: T >= ceil(-c / t) when t > 0, T <= floor(c / -t) when t < 0.
        if t > 0:
            return 1, 0, c // t
        return -1, 0, c // -t
    sigma = 1 if s > 0 else -1
    s_abs = abs(s)
    mag = max(-lo, hi)
    # int64 when no product can overflow (the widths pass proves it for lowered graphs),
    # Python integers otherwise.
    safe = (abs(t) + s_abs) * n * mag + abs(c) < 1 << 62
    big_t = np.arange(n * lo, n * hi + 1, dtype=np.int64)
    if not safe:
        big_t = big_t.astype(object)
    # S~ = sigma * S; the box: S in [m*lo, m*hi], T - S in [(n-m)*lo, (n-m)*hi].
    s_lo = np.maximum(m * lo, big_t - (n - m) * hi)
    s_hi = np.minimum(m * hi, big_t - (n - m) * lo)
    if sigma < 0:
        s_lo, s_hi = -s_hi, -s_lo
    keep = s_lo <= s_hi
    big_t, s_lo, s_hi = big_t[keep], s_lo[keep], s_hi[keep]
    g = _ceil_div(-c - t * big_t, s_abs)  # on iff S~ >= g
    g = np.minimum(np.maximum(g, s_lo), s_hi + 1)
    on, off = g <= s_hi, g - 1 >= s_lo
    for shift in range(max(s_abs.bit_length(), abs(t).bit_length()) - 1, -1, -1):
        tn = _round_shift(t, shift)
        sn = max(1, _round_shift(s_abs, shift))
        lower = -tn * big_t[on] - sn * g[on]
        upper = -1 - tn * big_t[off] - sn * (g[off] - 1)
        c_lo = int(lower.max()) if lower.size else None
        c_hi = int(upper.min()) if upper.size else None
        if c_lo is None and c_hi is None:
            return 0, 0, 0 if c >= 0 else -1
        if c_lo is None:
            return tn, sigma * sn, c_hi
        if c_hi is None or c_lo <= c_hi:
            return tn, sigma * sn, c_lo
    raise AssertionError("k = 0 reproduces the test itself")


def _round_shift(v: int, k: int) -> int:
    """``round(v / 2^k)``, halves away from zero."""
    if k == 0:
        return v
    a = (abs(v) + (1 << (k - 1))) >> k
    return a if v >= 0 else -a


def bits(*values: int) -> int:
    """Width of a signed integer holding every value (at least 2)."""
    return max(2, *(int(v).bit_length() + 1 for v in values))
