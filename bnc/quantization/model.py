"""A float ``Graph`` (``capture.float_graph``) → the ``bnc.nn`` model ``bnc compile`` takes.

Layer by layer, by name:

* the input gets an ``InputQuantizer`` (``input_bits``, unsigned when the calibration images
  are never negative, its scale the largest magnitude over the code range: 1/255 for images
  in [0, 1] at 8 bits);
* ``nn.Conv2d`` / ``nn.Linear`` → ``BinaryConv2d`` / ``BinaryLinear`` with the same weights,
  bias and geometry and a weight quantizer fitted to them (``weights.quantizer_for``);
* ``nn.ReLU`` → an unsigned ``ActQuantizer(activations)`` (its clamp at 0 is the ReLU);
* a convolution or linear layer whose input is not yet codes (it follows a BatchNorm, a sum
  or a concatenation with no ReLU between) reads through a signed ``ActQuantizer``;
* BatchNorm, pools, flatten, sums and concatenations are kept as they are (the compiler
  folds BatchNorm and sums into thresholds).

Activation scales are calibrated in data-flow order, each on the activations the already
quantized graph upstream of it produces (the later quantizers bypassed), so each scale sees
the errors of the ones before it. ``calibrate="mse"`` picks the clipping value with the least
squared quantization error over a grid; ``"percentile"`` clips at the 99.99th percentile.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.nn.graph import Graph
from bnc.quantization.prune import Masks, fit_kept
from bnc.quantization.weights import quantizer_for

CALIBRATIONS = ("mse", "percentile")
PERCENTILE = 0.9999
GRID = 100  # clipping values tried by the mse calibration, from 1 % to 100 % of the peak
SAMPLE = 1 << 20  # activation values kept per quantizer for its calibration
BATCH = 256


@dataclass(frozen=True)
class Options:
    """What ``bnc quantize`` was asked for (the command's options, checked)."""

    weights: int
    activations: int = 8
    method: str = "amq"
    importance: str | None = None
    codebook: int | None = None
    calibrate: str = "mse"
    input_bits: int = 8
    batch_norm: bool = True  # re-estimate BatchNorm statistics on the calibration samples


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str  # "weights" | "activations" | "input"
    detail: str


def _calibrate(
    graph: Graph, x: Tensor, targets: list[str], how: str, batch_norm: bool
) -> dict[str, float]:
    """Each quantizer's scale, in one pass over the samples ``x``: the steps run in order on
    the whole batch; a quantizer in ``targets`` is calibrated on its operand when the pass
    reaches it (so it sees the quantizers upstream, already calibrated) and then applied.
    With ``batch_norm``, each BatchNorm's running mean and variance are re-estimated the same
    way, on what the quantized layers before it produce (the float model's statistics no
    longer fit a layer whose weights moved). A value is dropped after its last reader."""
    last: dict[str, int] = {}
    for i, (_n, _k, operands) in enumerate(graph.steps):
        for o in operands:
            last[o] = i
    values = {"input": x}
    scales: dict[str, float] = {}
    for i, (name, kind, operands) in enumerate(graph.steps):
        args = [values[o] for o in operands]
        if kind == "layer":
            layer = graph.layers[name]
            if name in targets:
                lo, hi = int(layer.qmin), int(layer.qmax)
                scales[name] = choose_scale(_sample(args[0], len(scales)), lo, hi, how)
                layer.scale.fill_(scales[name])
            if batch_norm and isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
                _restat(layer, args[0])
            values[name] = _apply(layer, args[0])
        elif kind == "add":
            values[name] = sum(args[1:], args[0])
        else:
            values[name] = torch.cat(args, dim=1)
        for o in operands:
            if last[o] == i:
                del values[o]
    return scales


def restat_batch_norm(graph: Graph, x: Tensor) -> None:
    """Every BatchNorm's running statistics re-estimated on ``x`` through ``graph`` as it is
    (after fine-tuning: the activation scales are the learned ones)."""
    with torch.no_grad():
        _calibrate(graph.eval(), x, [], "mse", batch_norm=True)


def _restat(layer: nn.BatchNorm1d | nn.BatchNorm2d, x: Tensor) -> None:
    """The batch's per-channel mean and unbiased variance as ``layer``'s running statistics
    (what PyTorch's training-mode update converges to on this data)."""
    dims = [0] + list(range(2, x.dim()))
    v = x.to(torch.float64)
    layer.running_mean.copy_(v.mean(dims).to(layer.running_mean.dtype))
    if x.numel() // x.shape[1] > 1:
        layer.running_var.copy_(v.var(dims, unbiased=True).to(layer.running_var.dtype))


def _apply(layer: nn.Module, x: Tensor) -> Tensor:
    return torch.cat([layer(x[i : i + BATCH]) for i in range(0, x.shape[0], BATCH)])


def _sample(v: Tensor, seed: int) -> Tensor:
    flat = v.reshape(-1).to(torch.float32)
    if flat.numel() > SAMPLE:
        g = torch.Generator().manual_seed(seed)
        flat = flat[torch.randint(0, flat.numel(), (SAMPLE,), generator=g)]
    return flat


def _fake_quant(v: Tensor, scale: float, lo: float, hi: float) -> Tensor:
    return torch.clamp(torch.round(v / scale), lo, hi) * scale


def choose_scale(v: Tensor, lo: int, hi: int, how: str) -> float:
    """The scale of codes ``[lo, hi]`` for the values ``v``: the clip value over ``max(|lo|,
    hi)``, the clip chosen by ``how`` (``mse``: least squared error over the grid;
    ``percentile``: the 99.99th percentile of the magnitudes)."""
    top = float(max(abs(lo), hi))
    mag = v.abs() if lo < 0 else v.clamp_min(0)
    peak = float(mag.max()) if mag.numel() else 0.0
    if not peak > 0 or not math.isfinite(peak):
        return 1.0  # all zero: any scale codes them exactly
    if how == "percentile":
        return max(float(torch.quantile(mag[: min(mag.numel(), 1 << 24)], PERCENTILE)), peak *
                   1e-3) / top  # fmt: skip
    best, best_err = peak / top, math.inf
    for i in range(1, GRID + 1):
        scale = peak * i / GRID / top
        err = float(torch.mean((_fake_quant(v, scale, lo, hi) - v) ** 2))
        if err < best_err:
            best, best_err = scale, err
    return best


def _input_quantizer(x: Tensor, bits: int) -> bn.InputQuantizer:
    signed = bool((x < 0).any())
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    peak = float(x.abs().max())
    # the peak over the code range keeps every calibration value (images in [0, 1] at 8 bits
    # get 1/255); a float model's first layer is the one most sensitive to clipping
    scale = peak / max(abs(lo), hi) if peak > 0 else 1.0
    return bn.InputQuantizer(bits, scale, signed, input_shape=tuple(x.shape[1:]))


def quantize_graph(
    fg: Graph,
    calibration: Tensor,
    opts: Options,
    say: Callable[[str], None] = lambda s: None,
    masks: Masks | None = None,
    bits: dict[str, int] | None = None,
    hessians: dict[str, Tensor] | None = None,
) -> tuple[Graph, list[LayerReport]]:
    """The quantized graph of the float graph ``fg`` and what was chosen per layer; a layer
    in ``masks`` (pruned) has its weight quantizer fitted to the channels it keeps, a layer in
    ``bits`` (``--budget``) its own weight bits in place of ``opts.weights``; ``hessians``
    (``hessian_diagonals``) are the importances of ``--importance hessian``."""
    report: list[LayerReport] = []
    layers: dict[str, nn.Module] = {}
    steps: list[tuple[str, str, list[str]]] = []
    codes: dict[str, bool] = {}  # step → its value is codes (a conv may read it)
    to_calibrate: list[str] = []

    def fresh(base: str) -> str:
        name, n = base, 1
        while name in layers or name in codes or name == "input":
            n += 1
            name = f"{base}_{n}"
        return name

    first = fresh("input_quant")
    layers[first] = _input_quantizer(calibration, opts.input_bits)
    steps.append((first, "layer", ["input"]))
    codes[first] = True
    q_in = layers[first]
    report.append(LayerReport(first, "input", f"{opts.input_bits}-bit"
                              f" {'signed' if float(q_in.qmin) < 0 else 'unsigned'}, scale"
                              f" {float(q_in.scale):.6g}"))  # fmt: skip
    rename = {"input": first}
    for name, kind, operands in fg.steps:
        ops = [rename.get(o, o) for o in operands]
        if kind == "cat":
            raise BncError(f"layer '{name}' (cat): the compiler concatenates 1-bit activations"
                           " only, not the k-bit codes bnc quantize makes")  # fmt: skip
        if kind != "layer":
            steps.append((name, kind, ops))
            codes[name] = False
            continue
        layer = fg.layers[name]
        if isinstance(layer, nn.Conv2d | nn.Linear):
            if not codes[ops[0]]:
                aq = fresh(f"{name}_in")
                layers[aq] = bn.ActQuantizer(opts.activations, signed=opts.activations > 1)
                steps.append((aq, "layer", ops))
                codes[aq] = True
                to_calibrate.append(aq)
                ops = [aq]
            layers[name], detail = _quantized_layer(
                layer,
                opts,
                (masks or {}).get(name),
                (bits or {}).get(name, opts.weights),
                (hessians or {}).get(name),
            )
            report.append(LayerReport(name, "weights", detail))
            codes[name] = False
        elif isinstance(layer, nn.ReLU):
            layers[name] = bn.ActQuantizer(opts.activations)
            to_calibrate.append(name)
            codes[name] = True
        else:
            if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d) and codes[ops[0]]:
                raise BncError(f"layer '{name}' ({type(layer).__name__}) follows a ReLU; bnc"
                               " quantizes a BatchNorm before its ReLU (conv, BatchNorm, ReLU)"
                               " only")  # fmt: skip
            layers[name] = copy.deepcopy(layer)
            codes[name] = codes[ops[0]] and isinstance(
                layer, nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.Flatten | nn.Identity
            )
        steps.append((name, "layer", ops))
    graph = Graph(layers, steps).eval()
    say(f"calibrating {len(to_calibrate)} activation quantizers on {calibration.shape[0]}"
        f" samples ({opts.calibrate})")  # fmt: skip
    with torch.no_grad():
        scales = _calibrate(graph, calibration, to_calibrate, opts.calibrate, opts.batch_norm)
    for name in to_calibrate:
        q = graph.layers[name]
        report.append(LayerReport(name, "activations", f"{opts.activations}-bit"
                                  f" {'signed' if float(q.qmin) < 0 else 'unsigned'}, scale"
                                  f" {scales[name]:.6g}"))  # fmt: skip
    return graph, report


HESSIAN_SAMPLES = 256


@torch.no_grad()
def hessian_diagonals(fg: Graph, x: Tensor) -> dict[str, Tensor]:
    """``--importance hessian``: per layer with weights, the diagonal of the Hessian of its
    output's squared error in its weights (up to the factor 2 of OBS's and GPTQ's ``2 X X^T``):
    the mean square of the input each weight multiplies, on the first ``HESSIAN_SAMPLES``
    calibration samples through the float model, the same for every output channel."""
    sums: dict[str, tuple[Tensor, int]] = {}

    def hook(name: str) -> Callable:
        def pre(mod: nn.Module, args: tuple[Tensor, ...]) -> None:
            v = args[0].to(torch.float64)
            if isinstance(mod, nn.Conv2d):
                cols = F.unfold(v, mod.kernel_size, mod.dilation, mod.padding, mod.stride)
                sq, n = (cols**2).sum(dim=(0, 2)), cols.shape[0] * cols.shape[2]
            else:
                flat = v.reshape(-1, v.shape[-1])
                sq, n = (flat**2).sum(dim=0), flat.shape[0]
            s, c = sums.get(name, (torch.zeros_like(sq), 0))
            sums[name] = (s + sq, c + n)

        return pre

    fg.eval()
    weighted = {n: m for n, m in fg.layers.items() if isinstance(m, nn.Conv2d | nn.Linear)}
    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in weighted.items()]
    try:
        for i in range(0, min(len(x), HESSIAN_SAMPLES), 64):
            fg(x[i : min(i + 64, HESSIAN_SAMPLES)])
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, (s, c) in sums.items():
        w = weighted[name].weight
        out[name] = (s / max(c, 1)).to(torch.float32).reshape(1, *w.shape[1:]).expand_as(w)
    return out


def weight_quantizer(
    w: Tensor, opts: Options, keep: Tensor | None, bits: int, hessian: Tensor | None = None
) -> nn.Module:
    """The layer's weight quantizer by ``opts`` at ``bits``, fitted to the kept channels;
    ``hessian`` is the layer's importance when ``opts.importance`` is ``"hessian"``."""

    def fit(v: Tensor, which: Tensor | slice) -> nn.Module:
        importance = hessian[which] if hessian is not None else opts.importance
        return quantizer_for(v, opts.method, bits, importance, opts.codebook)

    return fit_kept(w, keep, fit)


def _quantized_layer(
    layer: nn.Conv2d | nn.Linear,
    opts: Options,
    keep: Tensor | None,
    bits: int,
    hessian: Tensor | None,
) -> tuple[nn.Module, str]:
    w = layer.weight.detach()
    q = weight_quantizer(w, opts, keep, bits, hessian)
    kept = slice(None) if keep is None else keep
    with torch.no_grad():
        rows = w[kept]
        err = float(torch.linalg.vector_norm(q(w)[kept] - rows) / torch.linalg.vector_norm(
            rows).clamp_min(1e-30))  # fmt: skip
    form = f"codebook {opts.codebook}" if opts.codebook else f"{opts.method} {bits}-bit"
    detail = f"{form}, relative error {err:.4f}"
    bias = layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        new: nn.Module = bn.BinaryConv2d(layer.in_channels, layer.out_channels,
                                         layer.kernel_size, layer.stride, layer.padding,
                                         bias=bias, quantizer=q)  # fmt: skip
    else:
        new = bn.BinaryLinear(layer.in_features, layer.out_features, bias=bias, quantizer=q)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias:
            new.bias.copy_(layer.bias.detach())
    return new, detail
