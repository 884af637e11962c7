"""``DropDeadChannels``: constant and unread channels leave the lowered graph, the rest of the
graph computes exactly what it computed with them (DESIGN §2.1), and ``bnc inspect`` says
what went."""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import bnc
import bnc.nn as bn
from bnc.api import dequantize_flat, output_op
from bnc.cli import main
from bnc.ir import interpreter as interp
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes import PIPELINE
from bnc.ir.passes.dead import DropDeadChannels, Kept, Why, dead_channel_info, removed_channels
from bnc.ladder import climb
from bnc.report import inspect_text

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import check  # noqa: E402
from irgen import multibit_chain, multibit_dag, multibit_resnet, random_dag, random_graph  # noqa: E402
from modelgen import random_batch, random_multibit_model  # noqa: E402

CODE_PLANES = (O.Threshold, O.MultiThreshold, O.Requantize)


def without_pass(graph: Graph) -> Graph:
    """The pipeline with every pass but ``DropDeadChannels``."""
    for p in PIPELINE:
        if not isinstance(p, DropDeadChannels):
            graph = p.apply(graph)
    return graph


def channels(graph: Graph) -> int:
    """Output channels of every threshold, multi-threshold and requantization."""
    return sum(graph.types[n.out].channels for n in graph.nodes if isinstance(n.op, CODE_PLANES))


def assert_exact(full: Graph, lowered: Graph, x: np.ndarray) -> None:
    """The network's float32 outputs are equal bit for bit; every kept channel of every plane
    equals its channel in ``full``; every channel removed as constant is constant."""
    info = removed_channels(lowered)
    assert info is not None
    va, vb = interp.run_all(full, x), interp.run_all(lowered, x)
    n = x.shape[0]
    ya = dequantize_flat(va[full.result].reshape(n, -1), output_op(full))
    yb = dequantize_flat(vb[lowered.result].reshape(n, -1), output_op(lowered))
    assert ya.shape == yb.shape and (ya.view(np.uint32) == yb.view(np.uint32)).all()
    gone = {r.op: dict(r.removed) for r in info.layers}
    after = {n.op.name: n.out for n in lowered.nodes if isinstance(n.op, CODE_PLANES)}
    for node in full.nodes:
        if not isinstance(node.op, CODE_PLANES):
            continue
        removed = gone.get(node.op.name, {})
        keep = [c for c in range(full.types[node.out].channels) if c not in removed]
        if keep:
            assert (va[node.out][:, keep] == vb[after[node.op.name]]).all(), node.op.name
        else:
            assert node.op.name not in after
        for c, why in removed.items():
            col = va[node.out][:, c]
            assert why is Why.UNREAD or (col == col.flat[0]).all(), (node.op.name, c, why)


def compiled(model: nn.Module, shape: tuple[int, int, int]) -> tuple[Graph, Graph]:
    """The model's lowered graph without and with the pass."""
    m = bnc.compile(model, torch.zeros(1, *shape))
    return without_pass(m.graph), m.lowered


def norm(c: int, gamma=None, beta=None, seed: int = 0) -> nn.Module:
    """A BatchNorm with chosen γ (else random, positive) and β (else 0), mean 0 and a random
    variance: a threshold at 0, which a layer with a nonzero weight reaches."""
    rng = np.random.default_rng(seed)
    m = nn.BatchNorm2d(c)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, c) if gamma is None else gamma))
        m.bias.copy_(torch.tensor(np.zeros(c) if beta is None else beta))
        m.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, c)))
    return m


def conv(c: int, o: int, k: int, seed: int, padding: int = 0, **kw) -> bn.BinaryConv2d:
    torch.manual_seed(seed)
    return bn.BinaryConv2d(c, o, k, padding=padding, **kw)


def gamma_chain() -> nn.Module:
    """Channels 1 and 4 of conv1 have γ = 0, channels 2 and 6 a β no input overcomes; no
    padding, and a head without bias, so every constant folds."""
    g1 = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    b1 = [0.0, 0.0, -1e4, 0.0, 0.0, 0.0, 1e4, 0.0]
    return nn.Sequential(OrderedDict(
        inq=bn.InputQuantizer(input_shape=(1, 8, 8)),
        conv1=conv(1, 8, 3, 0), bn1=norm(8, g1, b1), sign1=bn.Sign(),
        conv2=conv(8, 6, 3, 1), bn2=norm(6, seed=1), sign2=bn.Sign(),
        flat=nn.Flatten(), fc=bn.BinaryLinear(6 * 4 * 4, 5),
    )).eval()  # fmt: skip


def test_constant_channels_leave_a_chain_bit_exactly() -> None:
    full, lowered = compiled(gamma_chain(), (1, 8, 8))
    assert channels(lowered) == channels(full) - 4
    first = next(n for n in lowered.nodes if isinstance(n.op, O.Threshold))
    assert lowered.types[first.out].channels == 4
    (layer,) = removed_channels(lowered).layers
    assert layer.layer == "conv1" and layer.channels == 8
    assert dict(layer.removed) == {1: Why.GAMMA_ZERO, 4: Why.GAMMA_ZERO,
                                   2: Why.OUT_OF_REACH, 6: Why.OUT_OF_REACH}  # fmt: skip
    assert_exact(full, lowered, random_batch((1, 8, 8), 64, 0))
    assert DropDeadChannels().apply(lowered) is lowered  # nothing left to remove


def test_the_ladder_compares_the_bits_of_the_channels_that_stay() -> None:
    """PyTorch's sign1 has 8 channels, the lowered threshold 4: the ladder compares those 4
    (the removed ones are constant, so PyTorch's other channels are not compared)."""
    model = gamma_chain()
    report = climb(model, random_batch((1, 8, 8), 32, 2), ())
    assert set(report.bit_agreement) == {"sign1", "sign2"}
    assert report.bit_agreement["sign1"] >= 0.99, str(report)


def test_padding_keeps_a_constant_unless_it_stands_for_zero() -> None:
    """With zero padding a border window sees fewer taps: a constant bit (±1) stays; a code
    standing for 0 (a padded tap's value) goes; so does a constant read by a 1x1 layer."""
    q = bn.ActQuantizer(2, scale=0.5)
    model = nn.Sequential(OrderedDict(
        inq=bn.InputQuantizer(input_shape=(2, 6, 6)),
        conv1=conv(2, 6, 3, 2, padding=1),
        bn1=norm(6, [1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [0.0, -5.0, 0.0, 5.0, 0.0, 0.0]), act1=q,
        conv2=conv(6, 4, 3, 3, padding=1), bn2=norm(4, [1.0, 0.0, 1.0, 1.0], seed=3),
        sign2=bn.Sign(),
        conv3=conv(4, 3, 3, 4, padding=1), bn3=norm(3, seed=4), sign3=bn.Sign(),
        flat=nn.Flatten(), fc=bn.BinaryLinear(3 * 36, 4),
    )).eval()  # fmt: skip
    full, lowered = compiled(model, (2, 6, 6))
    info = {r.layer: r for r in removed_channels(lowered).layers}
    assert dict(info["conv1"].removed) == {1: Why.GAMMA_ZERO}  # code 0 (β = -5)
    assert dict(info["conv1"].kept) == {3: Kept.PADDED}  # code 3 (β = +5)
    assert dict(info["conv2"].kept) == {1: Kept.PADDED} and not info["conv2"].removed
    assert channels(lowered) == channels(full) - 1
    assert_exact(full, lowered, random_batch((2, 6, 6), 64, 1))


def pruned_model() -> nn.Module:
    """Ternary conv1 with all-zero rows 1 and 3 (pruned channels); int conv2 that reads none
    of conv1's channel 4 and whose row 0 is all zero."""
    conv1 = conv(1, 6, 3, 5, quantizer="ternary")
    conv2 = conv(6, 5, 1, 6, quantizer="int", weight_bits=3)
    with torch.no_grad():
        conv1.weight[[1, 3]] = 0.0
        conv2.weight[:, 4] = 0.0
        conv2.weight[0] = 0.0
    return nn.Sequential(OrderedDict(
        inq=bn.InputQuantizer(input_shape=(1, 7, 7)),
        conv1=conv1, bn1=norm(6, seed=5), act1=bn.ActQuantizer(2, scale=0.4),
        conv2=conv2, bn2=norm(5, seed=6), sign2=bn.Sign(),
        flat=nn.Flatten(), fc=bn.BinaryLinear(5 * 25, 3),
    )).eval()  # fmt: skip


def test_pruned_rows_and_unread_inputs_go() -> None:
    full, lowered = compiled(pruned_model(), (1, 7, 7))
    info = {r.layer: dict(r.removed) for r in removed_channels(lowered).layers}
    # one level (0) and no coefficient left: the lowered plane cannot tell it from γ = 0
    assert info["conv1"][1] is Why.NO_TERM and info["conv1"][3] is Why.NO_TERM
    assert info["conv1"][4] is Why.UNREAD
    assert info["conv2"][0] is Why.ZERO_WEIGHTS
    assert channels(lowered) <= channels(full) - 4
    # conv2's constants went into the output's bias (exact: no bias before, scale 2^-k)
    assert not output_op(full).bias.any() and output_op(lowered).bias.any()
    assert_exact(full, lowered, random_batch((1, 7, 7), 64, 2))


def residual_model() -> nn.Module:
    """A stem whose channel 2 is constant, a residual block of 1x1 layers whose sum has γ = 0
    on channel 2 too (both sides of the identity shortcut go), and a 1x1 body whose inner
    channel 0 is constant."""
    body = nn.Sequential(
        conv(4, 4, 1, 8), norm(4, [0.0, 1.0, 1.0, 1.0], seed=8), bn.Sign(),
        conv(4, 4, 1, 9), norm(4, seed=9),
    )  # fmt: skip
    return nn.Sequential(OrderedDict(
        sign_in=bn.Sign(),
        stem=conv(2, 4, 1, 7), stem_bn=norm(4, [1.0, 1.0, 0.0, 1.0], seed=7), sign=bn.Sign(),
        block=bn.Residual(body), block_bn=norm(4, [1.0, 1.0, 0.0, 1.0], seed=10),
        block_sign=bn.Sign(),
        flat=nn.Flatten(), fc=bn.BinaryLinear(4 * 25, 3),
    )).eval()  # fmt: skip


def test_residual_block_stays_exact() -> None:
    full, lowered = compiled(residual_model(), (2, 5, 5))
    info = {r.layer: dict(r.removed) for r in removed_channels(lowered).layers}
    assert info["stem"].keys() == {2}
    assert 2 in info["block.body.3"] and 0 in info["block.body.0"]
    shortcut = next(n.op for n in lowered.nodes if n.op.name.endswith(".shortcut"))
    assert shortcut.weight.shape == (3, 3, 1, 1)  # still an identity, of the kept channels
    assert (shortcut.weight[:, :, 0, 0] == np.eye(3, dtype=bool)).all()
    assert channels(lowered) == channels(full) - 3
    assert_exact(full, lowered, random_batch((2, 5, 5), 64, 3))


def test_residual_stream_keeps_a_channel_its_shortcut_needs() -> None:
    """Padding in the body keeps the stream's constant channel, so the sum's constant channel
    stays with it: the shortcut stays an identity."""
    body = nn.Sequential(conv(4, 4, 3, 11, padding=1), norm(4, seed=11))
    model = nn.Sequential(
        bn.InputQuantizer(input_shape=(1, 5, 5)),
        conv(1, 4, 1, 12), norm(4, [1.0, 0.0, 1.0, 1.0], seed=12), bn.Sign(),
        bn.Residual(body), norm(4, [1.0, 0.0, 1.0, 1.0], seed=13), bn.Sign(),
        nn.Flatten(), bn.BinaryLinear(4 * 25, 3),
    ).eval()  # fmt: skip
    full, lowered = compiled(model, (1, 5, 5))
    assert channels(lowered) == channels(full)
    kept = {k for r in removed_channels(lowered).layers for _, k in r.kept}
    assert kept == {Kept.PADDED, Kept.SHORTCUT}
    assert_exact(full, lowered, random_batch((1, 5, 5), 32, 4))


def concat_model() -> nn.Module:
    """A concat of a branch with γ = 0 on channel 1 and a branch whose every channel is
    constant (the concat loses that operand)."""
    a = nn.Sequential(conv(2, 3, 1, 14), norm(3, [1.0, 0.0, 1.0], seed=14), bn.Sign())
    b = nn.Sequential(conv(2, 2, 1, 15), norm(2, [0.0, 0.0], seed=15), bn.Sign())
    c = nn.Sequential(conv(2, 2, 1, 16), norm(2, seed=16), bn.Sign())
    return nn.Sequential(OrderedDict(
        sign_in=bn.Sign(),
        cat=bn.Concat(a, b, c),
        conv=conv(7, 4, 1, 17), bn=norm(4, seed=17), sign=bn.Sign(),
        flat=nn.Flatten(), fc=bn.BinaryLinear(4 * 16, 3),
    )).eval()  # fmt: skip


def test_concat_drops_channels_and_a_dead_operand() -> None:
    full, lowered = compiled(concat_model(), (2, 4, 4))
    (cat,) = [n for n in lowered.nodes if isinstance(n.op, O.Concat)]
    assert len(cat.args) == 2 and lowered.types[cat.out].channels == 4
    assert channels(lowered) == channels(full) - 3
    assert_exact(full, lowered, random_batch((2, 4, 4), 64, 5))


def multibit_model() -> nn.Module:
    """Multi-bit and int weights into 2-bit codes (multi-thresholds) and an 8-bit residual
    stream (requantizations), γ = 0 and an unreachable β on some channels; channel 0 of the
    stream is constant before and after the block (it goes), channel 2 only in the body."""
    stream = bn.ActQuantizer(8, signed=True, scale=0.05)
    body = nn.Sequential(bn.Sign(), conv(4, 4, 1, 20, quantizer="ternary"),
                         norm(4, [0.0, 1.0, 0.0, 1.0], seed=20))  # fmt: skip
    return nn.Sequential(
        bn.InputQuantizer(input_shape=(2, 6, 6)),
        conv(2, 5, 3, 18, quantizer="multibit", weight_bits=2),
        norm(5, [1.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -1e4, 0.0], seed=18),
        bn.ActQuantizer(2, scale=0.5),
        conv(5, 4, 1, 19, quantizer="int", weight_bits=4),
        norm(4, [0.0, 1.0, 1.0, 1.0], seed=19), stream,
        bn.Residual(body), bn.ActQuantizer(8, signed=True, scale=0.05),
        nn.Flatten(), bn.BinaryLinear(4 * 16, 3, quantizer="multibit", weight_bits=2),
    ).eval()  # fmt: skip


def test_multibit_layers_stay_exact() -> None:
    full, lowered = compiled(multibit_model(), (2, 6, 6))
    for kind, fewer in ((O.MultiThreshold, 2), (O.Requantize, 1)):
        before, after = ([g.types[n.out].channels for n in g.nodes if isinstance(n.op, kind)]
                         for g in (full, lowered))  # fmt: skip
        assert after == [c - fewer for c in before], kind
    assert_exact(full, lowered, random_batch((2, 6, 6), 64, 6))
    for seed in range(6):  # modelgen's multi-bit models: zero γ, every weight form
        model, shape = random_multibit_model(seed)
        assert_exact(*compiled(model, shape), random_batch(shape, 16, seed))


def test_network_outputs_and_graphs_without_dead_channels_stay() -> None:
    """An output channel with all-zero weights is constant but stays; a graph with nothing
    dead is returned as it is (so its dump does not change)."""
    fc = bn.BinaryLinear(3 * 16, 4, quantizer="ternary")
    with torch.no_grad():
        fc.weight[1] = 0.0
    model = nn.Sequential(bn.InputQuantizer(input_shape=(1, 6, 6)), conv(1, 3, 3, 21),
                          norm(3, seed=21), bn.Sign(), nn.Flatten(), fc).eval()  # fmt: skip
    full, lowered = compiled(model, (1, 6, 6))
    assert lowered.output.shape == full.output.shape == (4, 1, 1)
    assert DropDeadChannels().apply(full) is full
    assert removed_channels(lowered) == dead_channel_info(full)
    assert not removed_channels(lowered).layers


def test_output_layer_keeps_a_constant_it_cannot_absorb_exactly() -> None:
    """A head with a BatchNorm (a bias of full precision) and an exact-form scale that is no
    power of two: ``float32(acc*scale + bias)`` with the constant moved into the bias could
    round differently, so the constant channel stays."""
    head = nn.BatchNorm1d(4)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.7]))
        head.running_mean.fill_(0.05)
    model = nn.Sequential(bn.InputQuantizer(input_shape=(1, 6, 6)), conv(1, 3, 3, 22),
                          norm(3, [1.0, 0.0, 1.0], seed=22), bn.Sign(), nn.Flatten(),
                          bn.BinaryLinear(3 * 16, 4), head).eval()  # fmt: skip
    full, lowered = compiled(model, (1, 6, 6))
    (layer,) = removed_channels(lowered).layers
    assert layer.kept == ((1, Kept.OUTPUT),) and not layer.removed
    assert channels(lowered) == channels(full)


def test_inspect_names_the_removed_channels(tmp_path: Path, capsys) -> None:
    _, lowered = compiled(pruned_model(), (1, 7, 7))
    text = inspect_text(lowered)
    assert (
        "  conv1: 3 of 6 output channels removed (2 constant: γ = 0 or all-zero weights, 1" in text
    )
    assert "    removed, γ = 0 or all-zero weights: 1, 3\n    removed, unread: 4\n" in text
    assert inspect_text(lowered) == text  # deterministic
    path = tmp_path / "net.pt"
    torch.save(gamma_chain(), path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "dead channels: 4 removed" in out
    assert "  conv1: 4 of 8 output channels removed (4 constant: 2 γ = 0, 2 threshold out of" in out
    assert "    removed, γ = 0: 1, 4\n    removed, threshold out of reach: 2, 6\n" in out


@pytest.mark.parametrize(
    "make, shape",
    [(gamma_chain, (1, 8, 8)), (pruned_model, (1, 7, 7)), (residual_model, (2, 5, 5)),
     (concat_model, (2, 4, 4)), (multibit_model, (2, 6, 6))],
)  # fmt: skip
def test_compiled_c_equals_the_interpreter(make, shape, tmp_path: Path) -> None:
    for tool in ("make", "cc"):
        require_tool(tool)
    _, lowered = compiled(make(), shape)
    assert removed_channels(lowered).removed > 0
    check(lowered, random_batch(shape, 16, 7), "c", tmp_path)


GRAPHS = {
    "chain": random_graph,
    "multibit-chain": multibit_chain,
    "dag": random_dag,
    "multibit": multibit_dag,
    "resnet": multibit_resnet,
}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), form=st.sampled_from(sorted(GRAPHS)))
def test_random_graphs_stay_exact(seed: int, form: str) -> None:
    """Random graphs of every form irgen makes (zero γ, sparsity up to 99 %, pruned rows):
    exact, and a second application finds nothing."""
    graph = GRAPHS[form](seed)
    full = without_pass(graph)
    lowered = DropDeadChannels().apply(full)
    assert_exact(full, lowered, random_batch(graph.input.shape, 16, seed))
    assert DropDeadChannels().apply(lowered) is lowered
    assert channels(lowered) == channels(full) - removed_channels(lowered).removed
