"""Random ``bnc.nn`` models for the end-to-end ladder (what a user could train)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import bnc.nn as bn


def _bn(rng: np.random.Generator, c: int, one_d: bool) -> nn.Module:
    m = nn.BatchNorm1d(c) if one_d else nn.BatchNorm2d(c)
    gamma = rng.normal(size=c)
    gamma[rng.random(c) < 0.1] = 0.0
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(gamma))
        m.bias.copy_(torch.from_numpy(rng.normal(scale=0.5, size=c)))
        m.running_mean.copy_(torch.from_numpy(rng.normal(scale=2.0, size=c)))
        m.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 3.0, size=c)))
    return m


def _binarize_(layer: nn.Module, rng: np.random.Generator, beta_share: float) -> None:
    with torch.no_grad():
        w = rng.random(tuple(layer.weight.shape)) < beta_share
        layer.weight.copy_(torch.from_numpy(np.where(w, 0.5, -0.5)))
        q = layer.quantizer
        if isinstance(q, bn.GDQ):
            q.tau.copy_(torch.from_numpy(rng.uniform(0.2, 1.5, size=q.tau.shape)))
            q.phi.copy_(torch.from_numpy(rng.normal(size=q.phi.shape)))


def random_model(seed: int) -> tuple[nn.Sequential, tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(6, 15)), int(rng.integers(6, 15))
    shape = (c, h, w)
    layers: list[nn.Module] = []
    if rng.random() < 0.8:
        layers.append(bn.InputQuantizer(signed=bool(rng.random() < 0.3), input_shape=shape))
    else:
        layers.append(bn.Sign())
    share = float(rng.choice([1.0, 0.5, 0.1, 0.05, 0.01]))
    x = torch.zeros(1, *shape)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.choice([1, 3, 5, 7]))
        if k > min(x.shape[2:]):
            k = 1
        o = int(rng.choice([1, 5, 16, 33, 64, 65]))
        conv = bn.BinaryConv2d(
            x.shape[1],
            o,
            k,
            stride=int(rng.integers(1, 3)),
            padding=int(rng.integers(0, k // 2 + 1)),
            bias=bool(rng.random() < 0.2),
            quantizer="symmetric" if rng.random() < 0.2 else "gdq",
            per_channel=bool(rng.random() < 0.4),
        )
        _binarize_(conv, rng, share)
        block: list[nn.Module] = [conv, _bn(rng, o, False), bn.Sign()]
        spatial = nn.Sequential(conv).eval()(x).shape[2:]
        if min(spatial) >= 2 and rng.random() < 0.6:
            block.insert(int(rng.choice([1, 3])), nn.MaxPool2d(2))
        layers += block
        x = nn.Sequential(*layers).eval()(torch.zeros(1, *shape))
    layers.append(nn.Flatten())
    classes = int(rng.integers(2, 11))
    head = bn.BinaryLinear(x.numel(), classes, bias=bool(rng.random() < 0.3))
    _binarize_(head, rng, share)
    layers.append(head)
    if rng.random() < 0.7:
        layers.append(_bn(rng, classes, True))
    return nn.Sequential(*layers).eval(), shape


def random_batch(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.3, 1.2, size=(n, *shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0
    return x


FORMS = ("gdq", "ternary", "int", "multibit")


def _quant_layer(layer: nn.Module, rng: np.random.Generator, form: str, zeros: float) -> None:
    """Give ``layer`` random latent weights and a fresh quantizer of ``form`` fitted to them
    (ternary: ``zeros`` of its weights at zero, by its delta)."""
    o = layer.weight.shape[0]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.normal(size=tuple(layer.weight.shape))))
    if form == "gdq":
        _binarize_(layer, rng, 1 - zeros)
    elif form == "ternary":
        delta = float(np.quantile(np.abs(layer.weight.detach().numpy()), zeros))
        layer.quantizer = bn.TernaryQuantizer(o, layer.weight, delta=delta)
    elif form == "int":
        bits = int(rng.integers(2, 5))
        layer.quantizer = bn.IntQuantizer(o, bits, layer.weight,
                                          narrow_range=bool(rng.random() < 0.3))  # fmt: skip
    else:
        layer.quantizer = bn.MultiBitQuantizer(o, int(rng.integers(1, 4)), layer.weight)


def _act(rng: np.random.Generator) -> nn.Module:
    kind = rng.choice(["sign", "unsigned", "signed"])
    if kind == "sign":
        return bn.Sign()
    bits = int(rng.integers(1, 5)) if kind == "unsigned" else int(rng.integers(2, 9))
    return bn.ActQuantizer(bits, signed=kind == "signed", scale=float(rng.uniform(0.1, 1.0)))


def random_multibit_model(seed: int) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A ``bnc.nn`` model of DESIGN §2.5–2.8's forms as a user trains them: every weight
    quantizer, Sign or k-bit activations (1–8 bits, signed or not), an 8-bit residual stream
    ``x = q(bn(conv(sign(x))) + x)``, max-pools of codes; zero and negative gamma, 0–99 %
    zero (ternary) or alpha (GDQ) weights."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(6, 13)), int(rng.integers(6, 13)))
    zeros = float(rng.choice([0.0, 0.5, 0.9, 0.99]))
    layers: list[nn.Module] = [bn.InputQuantizer(input_shape=shape)]
    c = int(rng.choice([4, 16, 33]))

    def conv(cin: int, cout: int, k: int = 3) -> bn.BinaryConv2d:
        layer = bn.BinaryConv2d(cin, cout, k, padding=k // 2)
        _quant_layer(layer, rng, str(rng.choice(FORMS)), zeros)
        return layer

    layers += [conv(shape[0], c), _bn(rng, c, False), _act(rng)]
    for _ in range(int(rng.integers(1, 3))):
        if rng.random() < 0.4:  # an 8-bit residual stream of two blocks
            scale = float(rng.uniform(0.02, 0.1))
            layers += [conv(c, c), _bn(rng, c, False), bn.ActQuantizer(8, True, scale=scale)]
            for _ in range(2):
                body = nn.Sequential(bn.Sign(), conv(c, c), _bn(rng, c, False))
                layers += [bn.Residual(body), bn.ActQuantizer(8, True, scale=scale)]
        else:
            layers += [conv(c, c), _bn(rng, c, False), _act(rng)]
        x = nn.Sequential(*layers).eval()(torch.zeros(1, *shape))
        if min(x.shape[2:]) >= 2 and rng.random() < 0.5:
            layers.append(nn.MaxPool2d(2))
    x = nn.Sequential(*layers).eval()(torch.zeros(1, *shape))
    layers.append(nn.Flatten())
    classes = int(rng.integers(2, 11))
    head = bn.BinaryLinear(x.numel(), classes)
    _quant_layer(head, rng, str(rng.choice(FORMS)), zeros)
    layers.append(head)
    if rng.random() < 0.7:
        layers.append(_bn(rng, classes, True))
    return nn.Sequential(*layers).eval(), shape
