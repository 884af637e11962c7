"""``bnc.quantize(...)``: a float model → a low-bit ``bnc.nn`` model (DESIGN §3)."""

from __future__ import annotations

import copy
import io
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bnc.errors import BncError
from bnc.nn.graph import Graph
from bnc.quantization import prune as pruning
from bnc.quantization.budget import allocate, check_budget
from bnc.quantization.capture import float_graph
from bnc.quantization.finetune import check_labels, load_dataset
from bnc.quantization.finetune import finetune as tune
from bnc.quantization.load import load_calibration, load_float
from bnc.quantization.model import (
    CALIBRATIONS,
    LayerReport,
    Options,
    hessian_diagonals,
    quantize_graph,
    restat_batch_norm,
    weight_quantizer,
)
from bnc.quantization.weights import METHODS

IMPORTANCES = ("magnitude", "hessian")


@dataclass
class Quantized:
    """The quantized model (a ``bnc.nn.Graph``), the float graph it came from and what was
    chosen per layer; ``save(path)`` writes the model with ``torch.save``."""

    model: Graph
    float_model: Graph
    layers: list[LayerReport]

    def save(self, path: str | Path) -> Path:
        dest = Path(path)
        buf = io.BytesIO()
        torch.save(self.model, buf)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest


def _check(opts: Options) -> None:
    def bits(what: str, v: object, lo: int) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= 8:
            raise BncError(f"{what} must be an integer from {lo} to 8, not {v!r}")

    bits("--weights", opts.weights, 1)
    bits("--activations", opts.activations, 1)
    bits("--input-bits", opts.input_bits, 2)
    if opts.method not in METHODS:
        raise BncError(f"--method must be one of {', '.join(METHODS)}, not {opts.method!r}")
    if opts.method == "int" and opts.weights < 2:
        raise BncError("--method int needs --weights 2 or more (1-bit weights: amq)")
    if opts.method == "ternary" and opts.weights != 2:
        raise BncError(f"--method ternary has 2-bit weights; --weights must be 2, not"
                       f" {opts.weights}")  # fmt: skip
    if opts.importance not in (None, *IMPORTANCES):
        raise BncError(f"--importance must be one of {', '.join(IMPORTANCES)}, not"
                       f" {opts.importance!r}")  # fmt: skip
    if opts.codebook is not None and not (
        isinstance(opts.codebook, int) and 2 <= opts.codebook <= 256
    ):
        raise BncError(f"--codebook must be a level count from 2 to 256, not {opts.codebook!r}")
    if opts.calibrate not in CALIBRATIONS:
        raise BncError(f"--calibrate must be one of {', '.join(CALIBRATIONS)}, not"
                       f" {opts.calibrate!r}")  # fmt: skip


def quantize(
    model: str | Path | nn.Module | torch.export.ExportedProgram,
    calibration: str | Path | torch.Tensor,
    weights: int,
    activations: int = 8,
    method: str = "amq",
    importance: str | None = None,
    codebook: int | None = None,
    calibrate: str = "mse",
    input_bits: int = 8,
    batch_norm: bool = True,
    finetune: str | Path | tuple[torch.Tensor, torch.Tensor] | None = None,
    prune: float | None = None,
    budget: int | None = None,
    epochs: int = 2,
    lr: float = 2e-4,
    output: str | Path | None = None,
    trust: bool = False,
    say: Callable[[str], None] = lambda s: None,
) -> Quantized:
    """Quantize a float model (a module, a program or a file) with calibration samples (a
    tensor or an ``X.npy`` path, N × the model's input shape); ``batch_norm`` re-estimates
    the BatchNorm statistics on them after quantizing. ``finetune`` (``DATA.npz`` with
    ``images`` and ``labels``, or the two tensors) trains the quantized model ``epochs``
    passes, distilled from the float one (``finetune.finetune``). ``prune`` removes that
    fraction of each layer's output channels by L1 norm (``prune``), with ``finetune`` 20 % at
    a time, each step fine-tuned ``epochs`` passes. ``budget`` (bytes) chooses each layer's
    weight bits from 1 (2 for ``int``) to ``weights`` so that the compiled weights fit
    (``budget``). ``output`` writes the result.
    Every bad argument raises ``BncError`` with one line before anything is written."""
    opts = Options(
        weights, activations, method, importance, codebook, calibrate, input_bits, batch_norm
    )
    _check(opts)
    fraction = None if prune is None else pruning.check_fraction(prune)
    if budget is not None:
        check_budget(budget)
        if codebook is not None or method == "ternary":
            raise BncError("--budget chooses the weight bits per layer; --codebook and"
                           " --method ternary fix them (use amq, refined, greedy, kmeans or"
                           " int)")  # fmt: skip
    if not (isinstance(epochs, int) and epochs >= 1) or not (lr > 0 and math.isfinite(lr)):
        raise BncError(f"--epochs must be a positive integer and --lr a positive number, not"
                       f" {epochs!r} and {lr!r}")  # fmt: skip
    if isinstance(calibration, torch.Tensor):
        x = calibration.detach().to(torch.float32)
        if x.dim() < 2 or x.shape[0] < 1 or not bool(torch.isfinite(x).all()):
            raise BncError(f"calibration: a batch (N, C, H, W) of finite values, not shape"
                           f" {tuple(x.shape)}")  # fmt: skip
    else:
        x = load_calibration(calibration)
    shape = tuple(int(d) for d in x.shape[1:])
    data = None
    if isinstance(finetune, str | Path):
        data = load_dataset(finetune, shape)
    elif finetune is not None:
        data = (finetune[0].detach().to(torch.float32), finetune[1].detach().to(torch.int64))
    if isinstance(model, str | Path):
        say(f"reading {model}")
        fg = load_float(model, shape, trust)
        where = str(model)
    else:
        where = type(model).__name__
        fg = float_graph(model, shape, where)
    convs = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in fg.layers.values())
    if not convs:
        raise BncError(f"{where}: no nn.Conv2d or nn.Linear layer to quantize")
    say(f"{len(fg.steps)} layers, {convs} with weights; quantizing the weights ({method}"
        f"{f', codebook {codebook}' if codebook else f', {weights}-bit'})")  # fmt: skip
    if data is not None:
        with torch.no_grad():
            classes = int(fg(x[:1]).reshape(1, -1).shape[1])
        check_labels(data[1], classes, str(finetune) if isinstance(finetune, str | Path) else
                     "finetune")  # fmt: skip
    groups: dict[str, list[str]] = {}
    masks: pruning.Masks = {}
    steps = [] if fraction is None else pruning.schedule(fraction, data is not None)
    source = fg
    if steps:
        groups = pruning.prunable(fg)
        if not groups:
            raise BncError(f"--prune: {where} has no layer whose channels can be removed (each"
                           " layer with weights feeds a residual add, a concatenation or the"
                           " output)")  # fmt: skip
        masks = pruning.choose(fg, groups, steps[0], {})
        source = copy.deepcopy(fg)
        pruning.apply(source, groups, masks)
        say(f"pruning {100 * fraction:g} % of the channels of {len(groups)} layers (L1"
            f"{', 20 % per fine-tuned step' if len(steps) > 1 else ''})")  # fmt: skip
    hessians = hessian_diagonals(source, x) if importance == "hessian" else None
    bits = None
    if budget is not None:
        candidates = list(range(2 if method == "int" else 1, weights + 1))
        alloc = allocate(source, x, budget, candidates,
                         lambda n, w, b: weight_quantizer(w, opts, masks.get(n), b, (hessians
                                                          or {}).get(n)), masks, say)  # fmt: skip
        bits = alloc.bits
        say(f"--budget {budget:,}: {alloc.total:,} bytes of weights (from {alloc.smallest:,} at"
            f" {candidates[0]} bit to {alloc.widest:,} at {weights}); bits per layer:"
            f" {', '.join(f'{n} {b}' for n, b in bits.items())}")  # fmt: skip
    qg, report = quantize_graph(source, x, opts, say, masks, bits, hessians)
    pruning.apply(qg, groups, masks)
    if data is not None:
        each = f" per pruning step ({len(steps)} steps)" if steps else ""
        say(f"fine-tuning {epochs} epochs{each} on {len(data[0])} samples (lr {lr:g}, distilled"
            " from the float model)")  # fmt: skip
        for k, f in enumerate(steps or [None]):
            if k:
                masks = pruning.choose(qg, groups, f, masks)
                pruning.apply(qg, groups, masks)
            label = f"pruned {100 * f:g} %, fine-tuning" if f is not None else "fine-tuning"
            step_masks = masks
            tune(qg, fg, data[0], data[1], epochs, lr, say,
                 constrain=lambda m=step_masks: pruning.apply(qg, groups, m),
                 label=label)  # fmt: skip
        restat_batch_norm(qg, x)
    report += [LayerReport(n, "pruned", d) for n, d in pruning.describe(masks).items()]
    out = Quantized(qg, fg, report)
    if output is not None:
        out.save(output)
        say(f"wrote {output}")
    return out
