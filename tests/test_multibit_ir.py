"""Multi-bit forms in the IR (DESIGN §2.4–2.8): weight decomposition, multi-thresholds,
requantization, max-pool of codes; the lowered interpreter against the import-level one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph
from bnc.ir.passes import LoweringError, lower
from bnc.ir.passes.dead import removed_channels
from bnc.ir.passes.multibit import ONE_HOT_MAX, _planes, decompose
from bnc.ir.types import real
from bnc.quantization.weights import levels_of

sys.path.insert(0, str(Path(__file__).parent))
from irgen import _Dag, batch_norm, multibit_dag, quant_conv, random_input  # noqa: E402


def _output(graph: Graph) -> O.OutputAffine:
    node = graph.producer(graph.result)
    while isinstance(node.op, O.Flatten):
        node = graph.producer(node.args[0])
    assert isinstance(node.op, O.OutputAffine)
    return node.op


@settings(max_examples=60, deadline=None)
@given(
    o=st.integers(1, 6),
    c=st.integers(1, 9),
    levels=st.integers(1, 9),
    zeros=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    seed=st.integers(0, 2**31 - 1),
)
def test_decomposition_rebuilds_the_weights(o: int, c: int, levels: int, zeros: float, seed: int):
    rng = np.random.default_rng(seed)
    lv = rng.normal(size=(o, levels))
    p = np.full(levels, (1 - zeros) / max(levels - 1, 1))
    p[0] = zeros if levels > 1 else 1.0
    index = rng.choice(levels, p=p / p.sum(), size=(o, c, 3, 3))
    d = decompose(index, lv)
    w = np.take_along_axis(lv, index.reshape(o, -1), axis=1).reshape(index.shape)
    rebuilt = d.lam0[:, None, None, None] + np.einsum("ko,kocyx->ocyx", d.lam, d.masks)
    np.testing.assert_allclose(rebuilt, w, rtol=0, atol=1e-9)


def test_ternary_zeros_cost_nothing_and_dense_int_weights_take_planes() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(0.5, 2, size=16)
    index = rng.choice(3, p=[0.05, 0.9, 0.05], size=(16, 32, 3, 3))
    d = decompose(index, np.stack([-s, 0 * s, s], axis=1))
    assert (d.lam0 == 0).all() and d.masks.shape[0] == 2  # zeros are the shared term
    assert d.masks.sum() == (index != 1).sum()
    dense = rng.integers(0, 4, size=(16, 32, 3, 3))  # 2-bit integers: two bit planes
    d = decompose(dense, s[:, None] * np.array([-2.0, -1.0, 0.0, 1.0]))
    assert d.masks.shape[0] == 2
    assert (d.masks.reshape(2, 16, -1).mean(axis=2) <= 0.5).all()  # each plane at most half ones


def test_wide_integer_weights_take_planes_not_hundreds_of_masks() -> None:
    """8-bit weights of more than 32 levels: the 8 bit planes, not one sparse one-hot mask per
    level (fewer pieces to visit, but up to 32 times the bytes); 2-bit sparse ones stay
    one-hot."""
    rng = np.random.default_rng(2)
    s = rng.uniform(0.5, 2, size=8)
    index = np.clip(np.rint(rng.laplace(128, 20, size=(8, 16, 3, 3))), 0, 255).astype(np.int64)
    d = decompose(index, s[:, None] * (np.arange(256) - 128.0))
    assert d.masks.shape[0] <= 8 and len(np.unique(index)) > ONE_HOT_MAX * 8
    sparse = rng.choice(4, p=[0.02, 0.02, 0.94, 0.02], size=(8, 16, 3, 3))
    assert decompose(sparse, s[:, None] * np.array([-2.0, -1.0, 0.0, 1.0])).masks.shape[0] == 3


@pytest.mark.parametrize("k", [3, 4, 6, 8])
def test_sorted_amq_levels_take_their_planes(k: int) -> None:
    """AMQ's levels sorted (``sum_i ±alpha_i`` in ascending order, as bnc quantize writes
    them) are k planes in another order: k masks rebuild the weights, not 2^k - 1 one-hot."""
    rng = np.random.default_rng(k)
    alphas = torch.from_numpy(rng.uniform(0.05, 1.0, size=(k, 6)))
    levels = levels_of(alphas).numpy().astype(np.float64)
    index = rng.integers(0, 1 << k, size=(6, 5, 3, 3))
    d = _planes(index, levels, index.shape[1:])  # decompose takes it where it costs less
    assert d is not None and d.masks.shape[0] == k
    w = np.take_along_axis(levels, index.reshape(6, -1), axis=1).reshape(index.shape)
    rebuilt = d.lam0[:, None, None, None] + np.einsum("ko,kocyx->ocyx", d.lam, d.masks)
    np.testing.assert_allclose(rebuilt, w, rtol=0, atol=1e-5 * np.abs(w).max())
    assert decompose(index, levels).masks.shape[0] <= ONE_HOT_MAX * k
    levels[:, 1] += 0.01 * (levels[:, 2] - levels[:, 1])  # no longer sums: no planes
    assert _planes(index, levels, index.shape[1:]) is None


def test_round_shift_is_round_half_to_even() -> None:
    v = np.arange(-5000, 5000, dtype=np.int64)
    for shift in range(0, 6):
        np.testing.assert_array_equal(O.round_shift(v, np.int64(shift)), np.rint(v / 2.0**shift))
    np.testing.assert_array_equal(O.round_shift(v, np.int64(-3)), v * 8)


@pytest.mark.parametrize("seed", range(40))
def test_lowered_multibit_graph_agrees_with_the_import_level(seed: int) -> None:
    """Every quantizer's codes and the arg-max of the lowered graph against the import-level
    float model (DESIGN §2.2: differences only at rounding ties)."""
    graph = multibit_dag(seed)
    lowered = lower(graph)
    for node in lowered.nodes:
        assert isinstance(node.op, O.LOWERED_OPS)
    x = random_input(graph, 48, seed)
    ref, low = interp.run_all(graph, x), interp.run_all(lowered, x)
    names = {n.op.name: n.out for n in lowered.nodes}
    for node in graph.nodes:
        if isinstance(node.op, O.Quantize):
            folded = next(v for k, v in names.items() if k.endswith(f"+{node.op.name}"))
            if low[folded].shape != ref[node.out].shape:
                continue  # a max-pool moved past the quantizer
            same = (ref[node.out] == low[folded]).mean()
            assert same >= 0.999, f"{node.op.name}: {same:.4%} of codes agree"
    y = interp.run(graph, x).reshape(len(x), -1)
    got = interp.dequantize(interp.run(lowered, x), _output(lowered)).reshape(len(x), -1)
    assert (y.argmax(axis=1) == got.argmax(axis=1)).mean() >= 0.97
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(y).max()))


def test_integer_levels_give_exact_small_thresholds() -> None:
    """Ternary weights into a 2-bit quantizer: coefficients are small integers (§2.6)."""
    rng = np.random.default_rng(3)
    g = _Dag((4, 6, 6))
    x = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
    conv = quant_conv(rng, "c", 4, 8, 3, 1, 1, 0.3, "ternary")
    y = g.add(batch_norm(rng, "bn", 8), g.add(conv, x))
    q = g.add(O.Quantize("q", 0.25, 0, 0, 3), y)
    fc = quant_conv(rng, "fc", 8, 3, 6, 1, 0, 0.5, "int")
    graph = g.graph(g.add(fc, q))
    lowered = lower(graph, dead_channels=False)
    mt = next(n.op for n in lowered.nodes if isinstance(n.op, O.MultiThreshold))
    assert mt.c.shape == (3, 8)
    # the channels whose codes are constant go (their thresholds out of reach or γ = 0)
    info = removed_channels(lower(graph))
    gone = 0 if info is None else sum(len(r.removed) for r in info.layers if r.op == "c+bn+q")
    kept = next(n.op for n in lower(graph).nodes if isinstance(n.op, O.MultiThreshold))
    assert gone > 0 and kept.c.shape == (3, 8 - gone)
    assert np.abs(np.concatenate([mt.t, mt.s])).max() <= 1  # ±1 and 0: the levels' ratios
    assert (np.diff(mt.c, axis=0) <= 0).all()  # monotone thresholds


def _bad(ops: list[O.Op], shape=(2, 4, 4)) -> Graph:
    return Graph.chain(real(shape), ops)


def test_bad_quantizers_give_one_line_naming_the_layer() -> None:
    rng = np.random.default_rng(0)
    conv = quant_conv(rng, "c", 2, 3, 3, 1, 1, 0.5, "ternary")
    inq = O.QuantizeInput("in", 1 / 255, 0, 255)
    with pytest.raises(O.ShapeError, match=r"layer 'q'.*9 bits; bnc takes 1 to 8"):
        _bad([inq, conv, O.Quantize("q", 0.1, 0, 0, 511)]).verify()
    with pytest.raises(O.ShapeError, match=r"layer 'q'.*scale must be positive"):
        _bad([inq, conv, O.Quantize("q", -0.1, 0, 0, 3)]).verify()
    with pytest.raises(O.ShapeError, match=r"layer 'q' \(Quantize\).*takes the real output"):
        _bad([inq, O.Quantize("q", 0.1, 0, 0, 3)]).verify()
    g = _Dag((2, 4, 4))
    a = g.add(inq, INPUT)
    cat = g.add(O.Concat("cat"), g.add(conv, a), g.add(conv, a))
    with pytest.raises(LoweringError, match=r"^layer 'c' \(Affine\) cannot be compiled: [^\n]*$"):
        lower(g.graph(g.add(O.Quantize("q", 0.1, 0, 0, 3), cat)))
    bits = O.Sign("s")
    with pytest.raises(O.ShapeError, match=r"layer 'add' \(Add\).*differ in shape"):
        g = _Dag((2, 4, 4))
        a = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
        b = g.add(O.Quantize("q8", 0.1, 0, -128, 127), g.add(conv, a))
        s = g.add(bits, b)
        g.add(O.Add("add"), g.add(O.MaxPool2d("p", (2, 2), (2, 2)), s), b)
