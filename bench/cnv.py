"""FINN's CNV topology built with ``bnc.nn`` (random weights at a chosen share of alpha), for
the FPGA benchmark: 32x32x3 input with the 8-bit quantizer; 3x3 unpadded convolutions 64, 64,
max-pool, 128, 128, max-pool, 256, 256; binary fully connected 512, 512, 10."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import bnc.nn as bn

CONVS = (64, 64, "pool", 128, 128, "pool", 256, 256)
FCS = (512, 512, 10)


def _batch_norm(rng: np.random.Generator, c: int, one_d: bool) -> nn.Module:
    m = nn.BatchNorm1d(c) if one_d else nn.BatchNorm2d(c)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, size=c)))
        m.bias.copy_(torch.from_numpy(rng.normal(scale=0.5, size=c)))
        m.running_mean.copy_(torch.from_numpy(rng.normal(scale=3.0, size=c)))
        m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 3.0, size=c)))
    return m


def _binarize(layer: nn.Module, rng: np.random.Generator, alpha_share: float) -> None:
    with torch.no_grad():
        b = rng.random(tuple(layer.weight.shape)) >= alpha_share
        layer.weight.copy_(torch.from_numpy(np.where(b, 0.5, -0.5)))


def cnv(alpha_share: float, seed: int = 0) -> nn.Sequential:
    """``alpha_share`` of the binary weights at alpha (b = 0): 0.5 dense, 0.95 sparse."""
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = [bn.InputQuantizer(bits=8, input_shape=(3, 32, 32))]
    c = 3
    for spec in CONVS:
        if spec == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        conv = bn.BinaryConv2d(c, int(spec), 3)
        _binarize(conv, rng, alpha_share)
        layers += [conv, _batch_norm(rng, int(spec), False), bn.Sign()]
        c = int(spec)
    layers.append(nn.Flatten())
    for i, o in enumerate(FCS):
        fc = bn.BinaryLinear(c, o)
        _binarize(fc, rng, alpha_share)
        layers += [fc, _batch_norm(rng, o, True)]
        if i < len(FCS) - 1:
            layers.append(bn.Sign())
        c = o
    return nn.Sequential(*layers).eval()
