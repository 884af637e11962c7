"""``narrow``: the small threshold decides exactly like the wide one on every point of the
box of reachable (T, S), which is what makes the FPGA's narrow comparators exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bnc.ir.narrow import bits, narrow

RANGES = [(-1, 1), (0, 255), (-128, 127), (0, 3), (-4, 3)]


def _box(n: int, m: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.arange(m * lo, m * hi + 1)
    r = np.arange((n - m) * lo, (n - m) * hi + 1)
    ss, rr = np.meshgrid(s, r)
    return (ss + rr).ravel().astype(object), ss.ravel().astype(object)  # exact products


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 30),
    frac=st.floats(0, 1),
    rng_i=st.integers(0, len(RANGES) - 1),
    p=st.sampled_from([8, 24, 40, 52]),
    t=st.floats(-1, 1),
    s=st.floats(-1, 1),
    c=st.floats(-1, 1),
    zero=st.sampled_from(["none", "t", "s", "both"]),
)
def test_same_decision_on_the_box(n, frac, rng_i, p, t, s, c, zero) -> None:
    lo, hi = RANGES[rng_i]
    if lo < -1 or hi > 1:
        n = min(n, 6)  # keep the box small for wide codes
    m = int(round(frac * n))
    scale = 1 << p
    ti, si = (0 if zero in ("t", "both") else int(t * scale)), int(s * scale)
    si = 0 if zero in ("s", "both") else si
    ci = int(c * scale * n * max(hi, -lo))
    big_t, big_s = _box(n, m, min(lo, 0), max(hi, 0))
    tn, sn, cn = narrow(ti, si, ci, n, m, min(lo, 0), max(hi, 0))
    wide = ti * big_t + si * big_s + ci >= 0
    small = tn * big_t + sn * big_s + cn >= 0
    assert np.array_equal(wide, small), (ti, si, ci, tn, sn, cn)


def test_narrows_wide_coefficients() -> None:
    """A 40-bit test over 576 bit taps (t / s within a factor 8, as GDQ levels give) needs
    about half the bits (the slope must be right to about 1 / 1153^2)."""
    rng = np.random.default_rng(0)
    widths = []
    for _ in range(50):
        s = int(rng.integers(1 << 39, 1 << 40))
        t = int(s * rng.uniform(-8, 8))
        c = int(rng.integers(-(1 << 48), 1 << 48))
        widths.append(bits(*narrow(t, s, c, 576, 288, -1, 1)))
    assert float(np.median(widths)) <= 21 and max(widths) <= 26


def test_narrowed_graphs_decide_alike_with_zero_points() -> None:
    """The pass over whole graphs whose codes carry zero points (the importers' forms): the
    per-tap values are q - zero_point, so every decision, and every output, stays the same.
    multibit_dag(216) is the graph where the box was once taken from q itself."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from irgen import multibit_dag, random_input

    from bnc.ir import interpreter as interp
    from bnc.ir.passes import lower
    from bnc.ir.passes.narrow import NarrowThresholds

    for seed in (216, *range(300, 312)):
        graph = lower(multibit_dag(seed))
        x = random_input(graph, 16, seed)
        want = np.asarray(interp.run(graph, x))
        got = np.asarray(interp.run(NarrowThresholds().apply(graph), x))
        np.testing.assert_array_equal(got, want, err_msg=f"multibit_dag({seed})")
