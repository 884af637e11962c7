"""Weight quantization for ``bnc quantize`` (``bnc.quantization.weights``) and the
``CodebookQuantizer`` its multi-bit and k-means results become: the error order of the
multi-bit methods, exact integer and ternary searches against brute force, k-means'
objective, the quantizer's numerics, and a codebook model compiled to C against the
interpreter."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import bnc
import bnc.nn as bn
from bnc.api import dequantize_flat, output_op
from bnc.frontend import load_model
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.nn.quant import nearest_index
from bnc.quantization import weights as W

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import assert_equal  # noqa: E402
from test_nn_multibit import _gather, save  # noqa: E402


def _laplace(shape: tuple[int, ...], g: torch.Generator, b: float = 1.0) -> Tensor:
    u = torch.rand(shape, generator=g) - 0.5
    return -b * torch.sign(u) * torch.log1p(-2 * u.abs())


def _cases() -> list[Tensor]:
    """Random layers of several shapes and seeds, with an all-zero row, constant rows of
    either sign, one weight per row, one row."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 3, 3, 3, generator=g)
    a[1] = 0.0
    a[2] = 0.25
    a[3] = -1.5
    b = _laplace((12, 40), g, 0.1)
    b[5, ::2] = 0.0
    return [
        a,
        b,
        torch.randn(1, 9, generator=g),
        torch.randn(5, 1, generator=g),
        torch.zeros(3, 4),
        torch.randn(16, 2, 1, 1, generator=g) * 1e-3,
    ]


CASES = _cases()


def _importance(kind: str, w: Tensor) -> W.Importance:
    if kind == "tensor":
        g = torch.Generator().manual_seed(w.numel())
        h = torch.rand(w.shape, generator=g)
        h.view(-1)[::3] = 0.0  # some weights do not count
        return h
    return {"none": None, "magnitude": "magnitude"}[kind]


def _own(w: Tensor, alphas: Tensor, planes: Tensor, imp: W.Importance) -> float:
    return W.reconstruction_error(w, W.planes_value(alphas, planes), imp)


# --- multi-bit planes ----------------------------------------------------------------------


@pytest.mark.parametrize("imp", ["none", "magnitude", "tensor"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_alternating_refined_greedy_error_order(bits: int, imp: str) -> None:
    """``E(amq) <= E(refined, nearest) <= E(refined, own) <= E(greedy, own)``, exactly, on the
    whole layer and on each row alone; greedy's nearest levels never do worse than its own
    planes. Where some row improves, the order is strict somewhere."""
    strict = 0
    for w in CASES:
        for part in [w, *(w[o : o + 1] for o in range(min(3, w.shape[0])))]:
            h = _importance(imp, part)
            ga, gp = W.greedy(part, bits, h)
            ra, rp = W.refined(part, bits, h)
            aa, ap = W.alternating(part, bits, h)
            greedy_own = _own(part, ga, gp, h)
            greedy_near = W.relative_error(part, W.levels_of(ga), h)
            refined_own = _own(part, ra, rp, h)
            refined_near = W.relative_error(part, W.levels_of(ra), h)
            amq = W.relative_error(part, W.levels_of(aa), h)
            assert amq <= refined_near <= refined_own <= greedy_own, (bits, imp, part.shape)
            assert greedy_near <= greedy_own
            assert _own(part, aa, ap, h) == amq  # alternating's planes are the nearest ones
            strict += amq < greedy_own
            for alphas, planes in ((ga, gp), (ra, rp), (aa, ap)):
                assert alphas.shape == (bits, part.shape[0]) and (alphas >= 0).all()
                assert planes.shape == (bits, *part.shape)
                assert set(planes.unique().tolist()) <= {-1.0, 1.0}
    if bits > 1:
        assert strict > 0


def test_least_squares_steps_never_increase_the_error() -> None:
    """Each alternating cycle and refined's solve: the error per cycle count is
    non-increasing, ``iterations=0`` is refined's alphas, and the cycles end by themselves."""
    g = torch.Generator().manual_seed(3)
    w = _laplace((8, 64), g)
    for bits, imp in ((2, None), (3, "magnitude"), (4, torch.rand(8, 64, generator=g))):
        assert torch.equal(W.alternating(w, bits, imp, iterations=0)[0], W.refined(w, bits, imp)[0])
        errors = [
            W.relative_error(w, W.levels_of(W.alternating(w, bits, imp, iterations=k)[0]), imp)
            for k in range(8)
        ]
        assert all(b <= a for a, b in zip(errors, errors[1:], strict=False)), errors
        assert errors[-1] < errors[0]
        final = W.alternating(w, bits, imp, iterations=10_000)[0]
        assert torch.equal(final, W.alternating(w, bits, imp)[0])  # stopped before the cap
        alphas, planes = W.refined(w, bits, imp)  # the weighted normal equations hold
        h = imp if isinstance(imp, Tensor) else w.abs() if imp else torch.ones_like(w)
        residual = (w - W.planes_value(alphas, planes)).double()
        normal = (h.double() * residual * planes.double()).sum(dim=-1)
        assert normal.abs().max() <= 1e-5 * (h.double() * w.abs()).sum(dim=-1).max()
        for o in range(w.shape[0]):  # refined per row, against greedy's own planes
            row = w[o : o + 1]
            h = imp if not isinstance(imp, Tensor) else imp[o : o + 1]
            assert _own(row, *W.refined(row, bits, h), h) <= _own(row, *W.greedy(row, bits, h), h)


def test_greedy_is_multibit_quantizers_initialisation() -> None:
    w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    alphas, planes = W.greedy(w, 3)
    q = bn.MultiBitQuantizer(5, 3, w)
    torch.testing.assert_close(alphas, q.alpha.detach(), rtol=1e-6, atol=0)
    assert torch.equal(W.planes_value(alphas, planes), W.reconstruction(w, "greedy", 3))
    index, levels = q.codes(w)
    assert torch.equal(W.levels_of(q.alpha.detach()), torch.sort(levels, dim=1)[0])


def test_levels_of_are_the_sorted_signed_sums() -> None:
    alphas = torch.tensor([[1.0, 0.5], [0.25, 0.5]])
    assert W.levels_of(alphas).tolist() == [[-1.25, -0.75, 0.75, 1.25], [-1.0, 0.0, 0.0, 1.0]]


# --- integers, ternary, k-means ------------------------------------------------------------


def _brute_int(w: np.ndarray, h: np.ndarray, bits: int) -> float:
    """The least ``sum h (w - s n)^2`` over every code vector ``n`` and its best ``s > 0``."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    best = float((h * w * w).sum())
    for n in itertools.product(range(lo, hi + 1), repeat=len(w)):
        n = np.asarray(n, dtype=np.float64)
        den = float((h * n * n).sum())
        s = float((h * w * n).sum()) / den if den > 0 else 0.0
        if s > 0:
            best = min(best, float((h * (w - s * n) ** 2).sum()))
    return best


def _brute_ternary(w: np.ndarray, h: np.ndarray) -> float:
    best = float((h * w * w).sum())
    for t in itertools.product((-1.0, 0.0, 1.0), repeat=len(w)):
        t = np.asarray(t)
        den = float((h * t * t).sum())
        s = float((h * w * t).sum()) / den if den > 0 else 0.0
        if s > 0:
            best = min(best, float((h * (w - s * t) ** 2).sum()))
    return best


def _sq(w: Tensor, approx: Tensor, h: Tensor) -> np.ndarray:
    d = (w - approx).abs().double()
    return (h.double() * d * d).sum(dim=1).numpy()


_tiny = st.lists(
    st.floats(-4, 4, width=32).map(lambda v: round(v, 2)), min_size=1, max_size=4
)  # rounded values: ties and repeats


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(_tiny, min_size=1, max_size=2),
    bits=st.sampled_from([2, 3]),
    weighted=st.booleans(),
)
def test_int_scale_is_the_brute_force_optimum(rows: list[list[float]], bits: int, weighted: bool):
    n = min(len(r) for r in rows)
    w = torch.tensor([r[:n] for r in rows], dtype=torch.float32)
    h = torch.rand(w.shape, generator=torch.Generator().manual_seed(n)) + 0.1 if weighted else None
    q = W.quantizer_for(w, "int", bits, h)
    assert isinstance(q, bn.IntQuantizer) and (q.scale > 0).all()
    index, levels = q.codes(w)
    steps = torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), dtype=torch.float32)
    assert torch.equal(levels, q.scale.detach()[:, None] * steps)  # the levels intended
    with torch.no_grad():
        got = _sq(w, q(w), h if h is not None else torch.ones_like(w))
    for o in range(w.shape[0]):
        hh = h[o].double().numpy() if h is not None else np.ones(n)
        want = _brute_int(w[o].double().numpy(), hh, bits)
        assert abs(got[o] - want) <= 1e-5 * want + 1e-9, (o, got[o], want)  # float32 distances


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(_tiny, min_size=1, max_size=3), weighted=st.booleans())
def test_ternary_search_is_the_brute_force_optimum(rows: list[list[float]], weighted: bool):
    n = min(len(r) for r in rows)
    w = torch.tensor([r[:n] for r in rows], dtype=torch.float32)
    hw = torch.rand(w.shape, generator=torch.Generator().manual_seed(n)) + 0.1
    h = hw if weighted else torch.ones_like(w)
    delta, scale = W.ternary(w, hw if weighted else None)
    t = torch.where(w >= 0, 1.0, -1.0) * (w.abs() > delta[:, None])
    got = _sq(w, scale[:, None] * t, h)
    for o in range(w.shape[0]):
        want = _brute_ternary(w[o].double().numpy(), h[o].double().numpy())
        assert abs(got[o] - want) <= 1e-5 * want + 1e-9, (o, got[o], want)  # float32 distances
    # one delta for the layer (TernaryQuantizer): the best shared threshold, per-row scales
    q = W.quantizer_for(w, "ternary", 2, hw if weighted else None)
    assert isinstance(q, bn.TernaryQuantizer)
    with torch.no_grad():
        shared = _sq(w, q(w), h).sum()
    brute = np.inf
    for d in [0.0, *w.abs().reshape(-1).tolist()]:
        keep = (w.abs() > d).double()
        t = torch.where(w >= 0, 1.0, -1.0).double() * keep
        den = (h.double() * keep).sum(dim=1)
        s = torch.where(den > 0, (h.double() * w.double().abs() * keep).sum(dim=1) / den, 0.0)
        brute = min(brute, float(_sq(w.double(), s[:, None] * t, h).sum()))
    assert abs(shared - brute) <= 1e-5 * brute + 1e-9
    assert shared >= got.sum() * (1 - 1e-6)


def test_ternary_beats_twn_and_keeps_zero_rows_zero() -> None:
    for w in CASES:
        q = W.quantizer_for(w, "ternary", None)
        twn = bn.TernaryQuantizer(w.shape[0], w)
        with torch.no_grad():
            ours, theirs = q(w), twn(w)
        assert W.reconstruction_error(w, ours) <= W.reconstruction_error(w, theirs) + 1e-7
        assert float(q.delta) >= 0 and (q.scale > 0).all()
        zero = (w.reshape(w.shape[0], -1) == 0).all(dim=1)
        assert (ours.reshape(w.shape[0], -1)[zero] == 0).all()


@pytest.mark.parametrize("imp", ["none", "magnitude", "tensor"])
def test_kmeans_levels_and_monotone_objective(imp: str) -> None:
    for w in CASES[:4]:
        h = _importance(imp, w)
        start = W.kmeans(w, 8, h, iterations=0)
        assert torch.equal(start, w.min() + (w.max() - w.min()) * torch.linspace(0, 1, 8))
        errors = []
        for k in range(12):
            levels = W.kmeans(w, 8, h, iterations=k)
            assert levels.shape == (8,) and torch.equal(levels, torch.sort(levels)[0])
            errors.append(W.relative_error(w, levels, h))
        assert all(b <= a for a, b in zip(errors, errors[1:], strict=False)), errors
        assert errors[-1] < errors[0]
    assert W.kmeans(torch.full((2, 3), 0.5), 4).tolist() == [0.5] * 4  # repeated levels
    q = W.quantizer_for(CASES[1], "amq", 2, codebook=5)  # the codebook replaces the method
    assert isinstance(q, bn.CodebookQuantizer) and q.levels.shape == (12, 5)
    assert torch.equal(q.levels, W.kmeans(CASES[1], 5).expand(12, 5))  # in every row
    assert W.quantizer_for(CASES[1], "kmeans", 3).levels.shape == (12, 8)


def test_quantizer_for_gives_the_methods_levels() -> None:
    w = CASES[1]
    for method in ("amq", "refined", "greedy"):
        q = W.quantizer_for(w, method, 3, "magnitude")
        alphas, _ = {"amq": W.alternating, "refined": W.refined, "greedy": W.greedy}[method](
            w, 3, "magnitude"
        )
        assert isinstance(q, bn.CodebookQuantizer)
        assert torch.equal(q.codes(w)[1], W.levels_of(alphas))
        with torch.no_grad():
            assert torch.equal(q(w), W.nearest(w, W.levels_of(alphas)))
    with torch.no_grad():
        assert torch.equal(W.reconstruction(w, "amq", 2), W.quantizer_for(w, "amq", 2)(w))
        assert torch.equal(W.reconstruction(w, "int", 4), W.quantizer_for(w, "int", 4)(w))
    assert W.relative_error(torch.zeros(2, 2), torch.zeros(2, 2)) == 0.0


# --- CodebookQuantizer ---------------------------------------------------------------------


_f32 = st.floats(-8, 8, width=32, allow_subnormal=False)


@settings(max_examples=150, deadline=None)
@given(
    levels=st.lists(
        st.one_of(_f32, st.sampled_from([0.0, 0.5, -0.5, 1e-7])), min_size=1, max_size=12
    ),
    xs=st.lists(_f32, min_size=1, max_size=20),
)
def test_nearest_index_is_the_float32_argmin(levels: list[float], xs: list[float]) -> None:
    lv = torch.sort(torch.tensor([levels], dtype=torch.float32), dim=1)[0]
    mids = ((lv[0, :-1] + lv[0, 1:]) / 2).tolist()  # ties between neighbours
    x = torch.tensor([xs + mids + levels + [-0.0]], dtype=torch.float32)
    want = (x[..., None] - lv[:, None, :]).abs().argmin(-1)
    assert torch.equal(nearest_index(x, lv), want)


def test_nearest_index_ties_between_levels_a_float_apart() -> None:
    """Distinct levels whose distances to ``x`` round to one float32 value: the lower index."""
    lv = torch.tensor([[0.0, 1e-10, 2e-10, 3e-10, 0.5, 0.50000006, 8.0]])
    x = torch.tensor([[1.0, 3.0, 0.25, 2.25, -1.0, 9.0]])
    want = (x[..., None] - lv[:, None, :]).abs().argmin(-1)
    assert torch.equal(nearest_index(x, lv), want)
    assert want[0].tolist() == [5, 4, 0, 4, 0, 6]  # a run's first, not its last


def _codebook_layers() -> list[nn.Module]:
    torch.manual_seed(5)
    conv = bn.BinaryConv2d(3, 5, 3, padding=1)
    conv.quantizer = bn.CodebookQuantizer(5, 6, conv.weight)
    lin = bn.BinaryLinear(7, 4)
    lin.quantizer = bn.CodebookQuantizer(4, 3, lin.weight)
    return [conv, lin]


def test_codebook_forward_is_exactly_the_gathered_codes() -> None:
    for layer in _codebook_layers():
        q, w = layer.quantizer, layer.weight
        assert torch.equal(q(w), _gather(q, w))
        with torch.no_grad():  # other weights, ties, exact levels, a training step's disorder
            w.normal_().mul_(0.3)
            w.view(-1)[:3] = q.levels[0, :3]
            w.view(-1)[3] = (q.levels[0, 0] + q.levels[0, 1]) / 2
            q.levels.add_(torch.randn_like(q.levels) * 0.5)
            q.levels[:, 1] = q.levels[:, 0]  # a repeated level
        index, levels = q.codes(w)
        assert torch.equal(levels, torch.sort(q.levels.detach(), dim=1)[0])
        flat = w.detach().reshape(w.shape[0], -1)
        argmin = (flat[..., None] - levels[:, None, :]).abs().argmin(-1)
        assert torch.equal(index.reshape(w.shape[0], -1), argmin)
        assert torch.equal(q(w), _gather(q, w))


def test_codebook_gradients_reach_weights_and_levels() -> None:
    layer = _codebook_layers()[0]
    q, w = layer.quantizer, layer.weight
    y = torch.randn(5, 3, 3, 3)
    (q(w) * y).sum().backward()
    assert torch.equal(w.grad, y)  # straight through
    index, _ = q.codes(w)
    want = torch.zeros(5, 6).scatter_add_(1, index.reshape(5, -1), y.reshape(5, -1))
    torch.testing.assert_close(q.levels.grad, want)  # each level: its weights' gradients


def test_codebook_from_state_dict_round_trip() -> None:
    q = _codebook_layers()[1].quantizer
    w = torch.randn(4, 7)
    with torch.no_grad():
        q.levels[:, [0, 2]] = q.levels[:, [2, 0]]  # saved out of order
    again = bn.CodebookQuantizer.from_state_dict(q.state_dict())
    assert torch.equal(again.levels, q.levels)
    for a, b in zip(again.codes(w), q.codes(w), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(again(w), q(w))


def _one_line(make) -> str:
    with pytest.raises(ValueError) as e:
        make()
    text = str(e.value)
    assert "\n" not in text.strip()
    return text


STATE_ERRORS = [
    ({}, "needs 'levels' of shape (O, L)"),
    ({"levels": torch.zeros(4)}, "not (4,)"),
    ({"levels": torch.zeros(2, 1)}, "L from 2 to 256, not (2, 1)"),
    ({"levels": torch.zeros(2, 257)}, "not (2, 257)"),
    ({"levels": torch.tensor([[0.0, float("nan")]])}, "must be finite"),
    ({"levels": torch.zeros(2, 3), "scale": torch.ones(2)}, "needs state entries ['levels']"),
]


@pytest.mark.parametrize(("state", "words"), STATE_ERRORS)
def test_bad_codebook_states_are_one_line(state: dict, words: str) -> None:
    assert words in _one_line(lambda: bn.CodebookQuantizer.from_state_dict(state))


w0 = torch.linspace(-1.0, 1.0, 24).reshape(4, 6)
BAD = [
    (lambda: bn.CodebookQuantizer(4, 1), "count must be an integer from 2 to 256, not 1"),
    (lambda: bn.CodebookQuantizer(4, 3, levels=torch.zeros(4, 2)), "shape (4, 3), not (4, 2)"),
    (lambda: W.greedy(w0, 0), "greedy bits must be an integer from 1 to 8, not 0"),
    (lambda: W.refined(w0, 9), "refined bits must be an integer from 1 to 8, not 9"),
    (lambda: W.alternating(w0, 2, iterations=-1), "iterations must be an integer >= 0"),
    (lambda: W.int_uniform(w0, 1), "int_uniform bits must be an integer from 2 to 8, not 1"),
    (lambda: W.quantizer_for(w0, "int", 1), "'int' bits must be an integer from 2 to 8"),
    (lambda: W.quantizer_for(w0, "amq", None), "'amq' bits must be an integer from 1 to 8"),
    (lambda: W.quantizer_for(w0, "lloyd", 2), "one of 'amq', 'refined', 'greedy', 'kmeans'"),
    (lambda: W.quantizer_for(w0, "ternary", 3), "bits must be 2 or None, not 3"),
    (lambda: W.quantizer_for(w0, "kmeans", None), "'kmeans' bits must be an integer from 1"),
    (lambda: W.quantizer_for(w0, "amq", 2, codebook=1), "codebook must be an integer from 2 to"),
    (lambda: W.quantizer_for(w0, "amq", 2, codebook=True), "256, not True"),
    (lambda: W.kmeans(w0, 257), "codebook must be an integer from 2 to 256, not 257"),
    (lambda: W.greedy(torch.randn(5), 2), "at least 2 dimensions, not (5,)"),
    (lambda: W.greedy(torch.zeros(0, 3), 2), "not (0, 3)"),
    (lambda: W.greedy(torch.ones(2, 2, dtype=torch.int64), 2), "float tensor"),
    (lambda: W.greedy(torch.full((2, 2), float("inf")), 2), "NaN or infinite"),
    (lambda: W.greedy(w0, 2, "hessian"), "None, 'magnitude' or a tensor of the weight's shape"),
    (lambda: W.greedy(w0, 2, torch.ones(6, 4)), "shape (4, 6), not (6, 4)"),
    (lambda: W.ternary(w0, -torch.ones(4, 6)), "importance must be finite and >= 0"),
    (lambda: W.levels_of(torch.ones(9, 2)), "K from 1 to 8"),
]


@pytest.mark.parametrize(("make", "words"), BAD)
def test_bad_arguments_are_one_line(make, words: str) -> None:
    assert words in _one_line(make)


# --- end to end ----------------------------------------------------------------------------


SHAPE = (3, 8, 8)


def codebook_model() -> nn.Sequential:
    """Codebook weights from ``quantizer_for`` (AMQ and k-means) in every layer."""
    torch.manual_seed(6)
    conv = bn.BinaryConv2d(3, 6, 3, padding=1, bias=True)
    conv.quantizer = W.quantizer_for(conv.weight, "amq", 2)
    conv2 = bn.BinaryConv2d(6, 5, 3, stride=2)
    conv2.quantizer = W.quantizer_for(conv2.weight, "kmeans", None, "magnitude", codebook=5)
    fc = bn.BinaryLinear(5 * 3 * 3, 4)
    fc.quantizer = W.quantizer_for(fc.weight, "refined", 3)
    m = nn.Sequential(
        bn.InputQuantizer(signed=True, scale=1 / 100, input_shape=SHAPE),
        conv,
        nn.BatchNorm2d(6),
        bn.Sign(),
        conv2,
        nn.BatchNorm2d(5),
        bn.ActQuantizer(2),
        nn.Flatten(),
        fc,
        nn.BatchNorm1d(4),
    )
    for sub in m.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.normal_(0.0, 0.5)
            sub.running_var.uniform_(0.5, 2.0)
            sub.weight.data.normal_()
            sub.bias.data.normal_(0.0, 0.5)
    return m.eval()


def _check_codes(m: nn.Module, graph) -> None:
    layers = dict(m.named_modules())
    found = 0
    for op in graph.ops:
        if isinstance(op, O.QuantConv2d | O.QuantLinear):
            layer = layers[op.name]
            index, levels = layer.quantizer.codes(layer.weight)
            assert np.array_equal(op.index, index.numpy())
            assert np.array_equal(op.levels, levels.numpy().astype(np.float64))
            found += 1
    assert found == 3


def test_codebook_model_compiles_to_c_and_equals_the_interpreter(tmp_path: Path) -> None:
    require_tool("cc")
    m = codebook_model()
    path = tmp_path / "m.pt"
    torch.save(m, path)
    compiled = bnc.compile(path, target="c")
    _check_codes(m, compiled.graph)
    x = (torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(7)) * 2 - 1).numpy()
    acc, _ = compiled.run_acc(x)
    assert_equal(compiled.lowered, x, acc, "c")
    out = interp.run(compiled.lowered, x).reshape(16, -1)
    want = dequantize_flat(out, output_op(compiled.lowered))
    assert np.array_equal(compiled.run(x), want)
    with torch.no_grad():  # and the import-level interpreter follows PyTorch
        ref = m(torch.from_numpy(x)).numpy()
    got = np.asarray(interp.run(compiled.graph, x)).reshape(16, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_codebook_model_imports_from_other_formats(fmt: str, tmp_path: Path) -> None:
    m = codebook_model()
    _check_codes(m, load_model(save(m, fmt, tmp_path / "m.bin")).graph)
