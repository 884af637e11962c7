"""TorchScript archives of ``nn.Sequential`` models (with ``bnc.nn.Residual`` / ``Concat``
blocks) → an equivalent eager module. Quantizers are rebuilt from their state dicts
(``from_state_dict``): their hyper-parameters are buffers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.frontend.convert import LEVEL_QUANTIZERS


def _state(m: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _rebuilt(cls: Any, state: dict[str, torch.Tensor], path: str, where: str) -> nn.Module:
    """A bnc.nn quantizer rebuilt from its state dict (hyper-parameters are buffers)."""
    try:
        return cls.from_state_dict(state)
    except (ValueError, RuntimeError) as e:
        raise BncError(f"{where}: layer '{path}': {e}") from None


def _layer(m: torch.jit.ScriptModule, path: str, where: str) -> nn.Module:
    kind = m.original_name
    st = _state(m)
    if kind == "Sequential":
        return nn.Sequential(
            *(_layer(c, f"{path}.{n}".lstrip("."), where) for n, c in m.named_children())
        )
    if kind == "Residual":
        return bn.Residual(_layer(m.body, f"{path}.body", where),
                           _layer(m.shortcut, f"{path}.shortcut", where))  # fmt: skip
    if kind == "Concat":
        kids = [_layer(c, f"{path}.branches.{n}", where) for n, c in m.branches.named_children()]
        return bn.Concat(*kids)
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(m.output_size)
    if kind == "AvgPool2d":
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
    if kind == "InputQuantizer":
        q = bn.InputQuantizer()
        for k, v in st.items():
            setattr(q, k, v)
        return q
    if kind == "ActQuantizer":
        return _rebuilt(bn.ActQuantizer, st, path, where)
    if kind == "Sign":
        return bn.Sign()
    if kind in ("BinaryConv2d", "BinaryLinear"):
        quant = m.quantizer.original_name
        w = st["weight"]
        per_channel = st.get("quantizer.tau", torch.zeros(1)).numel() > 1
        qkind: str | nn.Module = "gdq" if quant == "GDQ" else "symmetric"
        if quant == "SymmetricQuantizer":
            per_channel = bool(m.quantizer.per_channel)
        if quant in LEVEL_QUANTIZERS:
            inner = {k.removeprefix("quantizer."): v for k, v in st.items()
                     if k.startswith("quantizer.")}  # fmt: skip
            qkind = _rebuilt(LEVEL_QUANTIZERS[quant], inner, f"{path}.quantizer", where)
        if kind == "BinaryConv2d":
            layer: nn.Module = bn.BinaryConv2d(
                w.shape[1],
                w.shape[0],
                tuple(w.shape[2:]),
                stride=tuple(m.stride),
                padding=tuple(m.padding),
                bias="bias" in st,
                quantizer=qkind,
                per_channel=per_channel,
            )
        else:
            layer = bn.BinaryLinear(
                w.shape[1], w.shape[0], bias="bias" in st, quantizer=qkind, per_channel=per_channel
            )
        layer.load_state_dict(st)
        return layer
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        c = st["running_mean"].numel()
        bnm = (nn.BatchNorm1d if kind == "BatchNorm1d" else nn.BatchNorm2d)(
            c, eps=float(m.eps), affine="weight" in st
        )
        bnm.load_state_dict(st)
        return bnm
    if kind == "MaxPool2d":
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if kind == "Flatten":
        return nn.Flatten()
    if kind in ("Dropout", "Identity"):
        return nn.Identity()
    raise BncError(f"{where}: layer '{path}' is {kind}, which bnc cannot compile")


def rebuild(scripted: torch.jit.ScriptModule, where: str) -> nn.Module:
    if scripted.original_name != "Sequential":
        raise BncError(
            f"{where}: a TorchScript archive must hold an nn.Sequential (this one holds "
            f"{scripted.original_name}); save other models with torch.export.save"
        )
    return _layer(scripted, "", where).eval()
