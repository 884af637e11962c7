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
