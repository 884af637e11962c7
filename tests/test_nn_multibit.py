"""Multi-level weights (ternary, k-bit integer, AMQ multi-bit) and k-bit activations in
``bnc.nn``, and their import (``QuantConv2d`` / ``QuantLinear`` / ``Quantize``) from every
model format. Import level only: the interpreter's float64 run of the imported graph against
PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.frontend import from_module, load_model
from bnc.ir import interpreter as interp
from bnc.ir import ops as O

FORMS = [("ternary", None), ("int", 2), ("int", 4), ("int", 8), ("multibit", 1), ("multibit", 3)]
FORM_IDS = [f"{k}{b or ''}" for k, b in FORMS]
SHAPE = (3, 8, 8)


def _gather(q: nn.Module, weight: Tensor) -> Tensor:
    index, levels = q.codes(weight)
    o = weight.shape[0]
    assert index.dtype == torch.int64 and index.shape == weight.shape
    assert levels.dtype == torch.float32 and levels.shape[0] == o
    return levels.gather(1, index.reshape(o, -1)).reshape(weight.shape)


def _layers(kind: str, bits: int | None) -> list[nn.Module]:
    return [
        bn.BinaryConv2d(3, 5, 3, padding=1, quantizer=kind, weight_bits=bits),
        bn.BinaryLinear(7, 4, quantizer=kind, weight_bits=bits),
    ]


@pytest.mark.parametrize(("kind", "bits"), FORMS, ids=FORM_IDS)
def test_forward_is_exactly_the_gathered_codes(kind: str, bits: int | None) -> None:
    torch.manual_seed(0)
    for layer in _layers(kind, bits):
        q, w = layer.quantizer, layer.weight
        assert torch.equal(q(w), _gather(q, w))
        with torch.no_grad():  # other weights, ties at zero, scales moved by training
            w.normal_().mul_(0.3)
            w.view(-1)[:5] = 0.0
            for p in q.parameters():
                p.mul_(1.3)
        assert torch.equal(q(w), _gather(q, w))


def test_levels_of_each_form() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 6)
    t = bn.TernaryQuantizer(4, w)
    index, levels = t.codes(w)
    assert torch.equal(levels[:, 1], torch.zeros(4)) and torch.equal(levels[:, 2], t.scale)
    assert torch.equal(index == 1, w.abs() <= t.delta)
    i = bn.IntQuantizer(4, 3, w)
    assert i.codes(w)[1].shape == (4, 8) and (float(i.qmin), float(i.qmax)) == (-4.0, 3.0)
    narrow = bn.IntQuantizer(4, 3, w, narrow_range=True)
    assert narrow.codes(w)[1].shape == (4, 7) and float(narrow.qmin) == -3.0
    m = bn.MultiBitQuantizer(4, 2, w)
    index, levels = m.codes(w)
    a = m.alpha.detach()
    assert torch.equal(levels[:, 3], a[0] + a[1]) and torch.equal(levels[:, 0], -a[0] - a[1])
    assert torch.equal(index == 3, (w >= 0) & (w - a[0][:, None] >= 0))
    assert float(a[0, 0]) == pytest.approx(float(w[0].abs().mean()))  # greedy init


@pytest.mark.parametrize(("kind", "bits"), FORMS, ids=FORM_IDS)
def test_gradients_reach_latent_weights_and_scales(kind: str, bits: int | None) -> None:
    torch.manual_seed(1)
    layer = bn.BinaryConv2d(3, 4, 3, quantizer=kind, weight_bits=bits)
    x = torch.randn(8, 3, 6, 6)
    F.mse_loss(layer(x), torch.randn(8, 4, 4, 4)).backward()
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0
    params = list(layer.quantizer.parameters())
    assert params
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize(("bits", "signed"), [(1, False), (2, False), (8, True)])
def test_act_quantizer_value_and_gradients(bits: int, signed: bool) -> None:
    torch.manual_seed(2)
    q = bn.ActQuantizer(bits, signed=signed, scale=0.25)
    x = (torch.randn(4, 3, 5, 5) * 2).requires_grad_()
    y = q(x)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = torch.clamp(torch.round(x.detach() / 0.25), lo, hi)
    assert torch.equal(y, codes * q.scale.detach())
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert q.scale.grad is not None and float(q.scale.grad.abs()) > 0
    inside = (x.detach() / 0.25 >= lo) & (x.detach() / 0.25 <= hi)
    assert (x.grad[~inside] == 0).all() and (x.grad[inside] != 0).any()  # LSQ: clipped


def test_narrow_signed_activation_drops_the_lowest_code() -> None:
    q = bn.ActQuantizer(4, signed=True, narrow=True, scale=1.0)
    with torch.no_grad():
        assert q(torch.tensor([-100.0, -7.4, 100.0])).tolist() == [-7.0, -7.0, 7.0]
    assert (float(q.qmin), float(q.qmax)) == (-7.0, 7.0)


@pytest.mark.parametrize(("kind", "bits"), FORMS, ids=FORM_IDS)
def test_a_few_steps_reduce_the_loss(kind: str, bits: int | None) -> None:
    torch.manual_seed(3)
    x = torch.randn(256, 12)
    y = (x @ torch.randn(12, 3)).argmax(1)
    model = nn.Sequential(
        bn.BinaryLinear(12, 32, quantizer=kind, weight_bits=bits),
        nn.BatchNorm1d(32),
        bn.ActQuantizer(2),
        bn.BinaryLinear(32, 3, quantizer=kind, weight_bits=bits),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(F.cross_entropy(model(x), y))
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(F.cross_entropy(model(x), y))
    assert last < 0.8 * first, (first, last)


# --- import --------------------------------------------------------------------------------


def _randomize_bn(m: nn.Module) -> nn.Module:
    for sub in m.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.normal_(0.0, 0.5)
            sub.running_var.uniform_(0.5, 2.0)
            sub.weight.data.normal_()
            sub.bias.data.normal_(0.0, 0.5)
    return m.eval()


def chain(kind: str, bits: int | None, act_bits: int = 2) -> nn.Sequential:
    """Multi-level weights in every layer, a k-bit activation after the first BatchNorm."""
    torch.manual_seed(4)
    q = {"quantizer": kind, "weight_bits": bits}
    m = nn.Sequential(
        bn.InputQuantizer(signed=True, scale=1 / 100, input_shape=SHAPE),
        bn.BinaryConv2d(3, 6, 3, padding=1, bias=True, **q),
        nn.BatchNorm2d(6),
        bn.ActQuantizer(act_bits),
        bn.BinaryConv2d(6, 5, 3, stride=2, **q),
        nn.BatchNorm2d(5),
        bn.Sign(),
        nn.Flatten(),
        bn.BinaryLinear(5 * 3 * 3, 4, **q),
        nn.BatchNorm1d(4),
    )
    return _randomize_bn(m)


def residual_stream() -> nn.Sequential:
    """An 8-bit signed residual stream ``x = q(bn(conv(sign(x))) + x)`` of mixed weight forms."""
    torch.manual_seed(5)

    def body(**q: object) -> nn.Sequential:
        return nn.Sequential(bn.Sign(), bn.BinaryConv2d(6, 6, 3, padding=1, **q), nn.BatchNorm2d(6))

    m = nn.Sequential(
        bn.InputQuantizer(signed=True, scale=1 / 100, input_shape=SHAPE),
        bn.BinaryConv2d(3, 6, 3, padding=1, quantizer="int", weight_bits=4),
        nn.BatchNorm2d(6),
        bn.ActQuantizer(8, signed=True),
        bn.Residual(body(quantizer="ternary")),
        bn.ActQuantizer(8, signed=True),
        bn.Residual(body(quantizer="multibit", weight_bits=2)),
        bn.ActQuantizer(8, signed=True, narrow=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        bn.BinaryLinear(6, 4, quantizer="int", weight_bits=8),
    )
    return _randomize_bn(m)


class PlusNet(nn.Module):
    """The residual stream written with ``+`` in a forward of its own."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.inq = bn.InputQuantizer(signed=True, scale=1 / 100)
        self.stem = bn.BinaryConv2d(3, 4, 3, padding=1, quantizer="multibit", weight_bits=2)
        self.bn0 = nn.BatchNorm2d(4)
        self.q0 = bn.ActQuantizer(8, signed=True)
        self.sign = bn.Sign()
        self.conv = bn.BinaryConv2d(4, 4, 3, padding=1, quantizer="ternary")
        self.bn1 = nn.BatchNorm2d(4)
        self.q1 = bn.ActQuantizer(8, signed=True)
        self.fc = bn.BinaryLinear(4 * 8 * 8, 3)
        self.fc.quantizer = bn.IntQuantizer(3, 3, self.fc.weight, narrow_range=True)
        _randomize_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.q0(self.bn0(self.stem(self.inq(x))))
        x = self.q1(self.bn1(self.conv(self.sign(x))) + x)
        return self.fc(torch.flatten(x, 1))


def save(m: nn.Module, kind: str, path: Path) -> Path:
    if kind == "pickle":
        torch.save(m, path)
    elif kind == "torchscript":
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still have it
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(m).save(str(path))
    else:
        torch.export.save(torch.export.export(m, (torch.zeros(1, *SHAPE),)), path)
    return path


def _matches(m: nn.Module, graph, n: int = 32) -> None:
    torch.manual_seed(7)
    x = torch.rand(n, *SHAPE) * 2 - 1
    with torch.no_grad():
        ref = m(x).numpy()
    got = np.asarray(interp.run(graph, x.numpy())).reshape(n, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _check_codes(m: nn.Module, graph) -> None:
    """Every multi-level layer's levels and indices are the module's codes exactly."""
    layers = dict(m.named_modules())
    found = 0
    for op in graph.ops:
        if isinstance(op, O.QuantConv2d | O.QuantLinear):
            layer = layers[op.name]
            index, levels = layer.quantizer.codes(layer.weight)
            assert op.index.dtype == np.int64 and op.levels.dtype == np.float64
            assert np.array_equal(op.index, index.numpy())
            assert np.array_equal(op.levels, levels.numpy().astype(np.float64))
            found += 1
    assert found == sum(isinstance(s.quantizer, tuple(_LEVELS)) for s in bn.binary_layers(m))


_LEVELS = (bn.TernaryQuantizer, bn.IntQuantizer, bn.MultiBitQuantizer)


@pytest.mark.parametrize("fmt", ["pickle", "torchscript", "export"])
@pytest.mark.parametrize(("kind", "bits"), FORMS, ids=FORM_IDS)
def test_chain_imports_from_every_format(
    kind: str, bits: int | None, fmt: str, tmp_path: Path
) -> None:
    m = chain(kind, bits)
    imported = load_model(save(m, fmt, tmp_path / "m.bin"))
    names = [type(op).__name__ for op in imported.graph.ops]
    assert names.count("QuantConv2d") == 2 and names.count("QuantLinear") == 1
    quantize = [op for op in imported.graph.ops if isinstance(op, O.Quantize)]
    assert [(op.name, op.zero_point, op.qmin, op.qmax) for op in quantize] == [("3", 0, 0, 3)]
    assert quantize[0].scale == float(m[3].scale.detach())
    _check_codes(m, imported.graph)
    _matches(m, imported.graph)


def test_one_bit_unsigned_activation_imports() -> None:
    m = chain("int", 2, act_bits=1)
    graph = from_module(m, SHAPE).graph
    assert [(op.qmin, op.qmax) for op in graph.ops if isinstance(op, O.Quantize)] == [(0, 1)]
    _matches(m, graph)


@pytest.mark.parametrize("fmt", ["pickle", "torchscript", "export"])
def test_residual_stream_imports_from_every_format(fmt: str, tmp_path: Path) -> None:
    m = residual_stream()
    graph = load_model(save(m, fmt, tmp_path / "r.bin")).graph
    names = [type(op).__name__ for op in graph.ops]
    assert names.count("Add") == 2 and names.count("Quantize") == 3
    assert [op.qmin for op in graph.ops if isinstance(op, O.Quantize)] == [-128, -128, -127]
    _check_codes(m, graph)
    _matches(m, graph)


def test_forward_with_plus_imports_live_and_as_export(tmp_path: Path) -> None:
    m = PlusNet().eval()
    for graph in (
        from_module(m, SHAPE).graph,
        load_model(save(m, "export", tmp_path / "p.pt2")).graph,
    ):
        assert "Add" in {type(op).__name__ for op in graph.ops}
        assert graph.ops[-1].levels.shape == (3, 7)  # narrow 3-bit: codes -3..3
        _check_codes(m, graph)
        _matches(m, graph)


# --- the sparsity schedule -----------------------------------------------------------------


def _ternary_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        bn.BinaryLinear(16, 64, quantizer="ternary"),
        nn.BatchNorm1d(64),
        bn.Sign(),
        bn.BinaryLinear(64, 64, quantizer="ternary"),
        nn.BatchNorm1d(64),
        bn.Sign(),
        bn.BinaryLinear(64, 4),
        nn.BatchNorm1d(4),
    )


def test_ternary_schedule_reaches_its_nonzero_target() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1024, 16, generator=g)
    y = (x @ torch.randn(16, 4, generator=g)).argmax(1)
    model = _ternary_net()
    layers = bn.binary_layers(model)
    steps = 120
    s = bn.SparsitySchedule(model, 0.1, steps, exclude=[layers[-1]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = [m.weight.detach().clone() for m in layers]
        s.step()
        for w, m in zip(before, layers, strict=True):  # the schedule moves delta, not weights
            assert torch.equal(w, m.weight.detach())
    for m in layers[:2]:
        nonzero = int(m.quantizer.nonzero(m.weight).sum())
        assert nonzero == int(0.1 * m.weight.numel())
        assert int((m.quantizer(m.weight) != 0).sum()) == nonzero
    assert bn.beta_share(model, exclude=[layers[-1]]) <= 0.1
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc > 0.4, acc  # chance is 0.25


def test_global_ternary_projection_and_mixed_kinds() -> None:
    model = _ternary_net(2)
    layers = bn.binary_layers(model)
    s = bn.SparsitySchedule(model, 0.2, 10, exclude=[layers[-1]], per_layer=False)
    s.project(0.2)
    n = sum(m.weight.numel() for m in layers[:2])
    assert sum(int(m.quantizer.nonzero(m.weight).sum()) for m in layers[:2]) == int(0.2 * n)
    assert float(layers[0].quantizer.delta) == float(layers[1].quantizer.delta)
    with pytest.raises(ValueError, match="per_layer=False") as e:
        bn.SparsitySchedule(model, 0.2, 10, per_layer=False)
    assert "\n" not in str(e.value)


def test_multi_level_layers_must_be_excluded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        bn.BinaryLinear(8, 8, quantizer="int", weight_bits=4),
        bn.Sign(),
        bn.BinaryLinear(8, 8, quantizer="multibit", weight_bits=2),
        bn.Sign(),
        bn.BinaryLinear(8, 2),
    )
    layers = bn.binary_layers(model)
    assert len(layers) == 3
    for make in (
        lambda: bn.SparsitySchedule(model, 0.1, 10),
        lambda: bn.SparsitySchedule(model, 0.1, 10, exclude=[layers[0]]),
        lambda: bn.SparsityRegularizer(model, 0.1),
        lambda: bn.beta_share(model),
    ):
        with pytest.raises(ValueError, match="exclude=") as e:
            make()
        assert "\n" not in str(e.value) and "'" in str(e.value)
    s = bn.SparsitySchedule(model, 0.1, 10, exclude=layers[:2], count_excluded=True)
    s.project(0.1)
    assert bn.beta_share(model, exclude=layers[:2]) <= 0.1


# --- errors --------------------------------------------------------------------------------


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text.strip()
    return text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: bn.ActQuantizer(9), "bits must be an integer from 1 to 8, not 9"),
        (lambda: bn.ActQuantizer(0), "not 0"),
        (lambda: bn.ActQuantizer(1, signed=True), "signed"),
        (lambda: bn.ActQuantizer(4, scale=-0.5), "positive"),
        (lambda: bn.ActQuantizer(4, narrow=True), "narrow"),
        (lambda: bn.BinaryConv2d(2, 2, 1, quantizer="int", weight_bits=1), "from 2 to 8"),
        (lambda: bn.BinaryConv2d(2, 2, 1, quantizer="int", weight_bits=9), "not 9"),
        (lambda: bn.BinaryLinear(2, 2, quantizer="int"), "not None"),
        (lambda: bn.BinaryLinear(2, 2, quantizer="multibit", weight_bits=0), "from 1 to 8"),
        (lambda: bn.BinaryLinear(2, 2, weight_bits=2), "'gdq' has 1-bit"),
        (lambda: bn.BinaryLinear(2, 2, quantizer="symmetric", weight_bits=4), "symmetric"),
        (lambda: bn.BinaryLinear(2, 2, quantizer="ternary", weight_bits=3), "ternary"),
        (lambda: bn.IntQuantizer(4, 9), "IntQuantizer bits"),
        (lambda: bn.MultiBitQuantizer(4, 9), "MultiBitQuantizer bits"),
    ],
)
def test_bad_arguments_are_one_line(make, words: str) -> None:
    with pytest.raises(ValueError) as e:
        make()
    assert words in _one_line(e)


def test_one_bit_forms_accept_one_bit_and_are_unchanged() -> None:
    torch.manual_seed(8)
    ref = nn.Conv2d(3, 4, 3)
    torch.manual_seed(8)
    layer = bn.BinaryConv2d(3, 4, 3, weight_bits=1)
    assert torch.equal(layer.weight, ref.weight) and isinstance(layer.quantizer, bn.GDQ)
    assert set(layer.state_dict()) == {"weight", "quantizer.tau", "quantizer.phi"}
    assert isinstance(bn.BinaryLinear(2, 2, quantizer="symmetric").quantizer, bn.SymmetricQuantizer)


TAMPER = {
    "negative-scale": (lambda m: m[3].scale.fill_(-0.5), "the quantizer's scale must be positive"),
    "nan-scale": (lambda m: m[3].scale.fill_(float("nan")), "the quantizer's scale must be"),
    "bits-9": (lambda m: m[3].qmax.fill_(511.0), "codes [0, 511] need 9 bits; bnc takes 1 to 8"),
    "bits-0": (lambda m: m[3].qmax.fill_(0.0), "codes [0, 0] need 0 bits"),
    "int-weights-bits-9": (lambda m: m[1].quantizer.qmax.fill_(255.0), "signed k-bit range"),
}
CASES = [(t, "pickle") for t in TAMPER] + [
    (t, f) for t in ("negative-scale", "int-weights-bits-9") for f in ("torchscript", "export")
]


@pytest.mark.parametrize(("tamper", "fmt"), CASES, ids=[f"{t}-{f}" for t, f in CASES])
def test_bad_saved_quantizers_are_one_line(tamper: str, fmt: str, tmp_path: Path) -> None:
    m = chain("int", 4)
    change, words = TAMPER[tamper]
    with torch.no_grad():
        change(m)
    with pytest.raises(BncError) as e:
        load_model(save(m, fmt, tmp_path / "bad.bin"))
    text = _one_line(e)
    assert words in text and ("layer '1" if tamper.startswith("int") else "layer '3'") in text


def test_clamp_latent_keeps_activation_scales_positive() -> None:
    """An optimizer step that would carry a small learned scale through zero is undone."""
    model = nn.Sequential(bn.BinaryConv2d(1, 2, 3), nn.BatchNorm2d(2), bn.ActQuantizer(8, True))
    with torch.no_grad():
        model[2].scale.fill_(-0.01)
    bn.clamp_latent_(model)
    assert float(model[2].scale.detach()) > 0
