"""QONNX test models built with Brevitas in the test process, and their reference outputs.

The FINN ``bnn_pynq`` topologies (TFC, SFC, LFC, CNV) and a small residual network get random
weights and batch-norm statistics calibrated on random inputs, so that no layer is saturated
or of one sign. ``export`` writes QONNX with Brevitas; ``reference`` runs the file with qonnx's
executor and ``torch_reference`` runs the Brevitas module itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

with warnings.catch_warnings():
    # brevitas warns on import (brevitas.fx deprecation, missing fast_hadamard_transform).
    warnings.simplefilter("ignore")
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

FINN_MODELS: tuple[str, ...] = (
    "tfc_1w1a",
    "tfc_1w2a",
    "tfc_2w2a",
    "sfc_1w1a",
    "sfc_1w2a",
    "sfc_2w2a",
    "lfc_1w1a",
    "lfc_1w2a",
    "cnv_1w1a",
    "cnv_1w2a",
    "cnv_2w2a",
)

_CALIBRATION_BATCH = 64
_DEGENERACY_BATCH = 64
_ATTEMPTS = 5
_Norm = nn.BatchNorm1d | nn.BatchNorm2d | TensorNorm


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings, no stdout and no torch.onnx log lines while Brevitas/torch work."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) input of a FINN model: MNIST for the FC models, CIFAR-10 for CNV."""
    return (3, 32, 32) if name.lower().startswith("cnv") else (1, 28, 28)


def random_inputs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` float32 samples in [0, 1], salted with 0, 1, 0.5, 0.25, 0.75, k/256 and k/255."""
    rng = np.random.default_rng(seed)
    size = (n, *shape)
    x = rng.random(size, dtype=np.float32)
    kind = rng.choice(4, size=size, p=[0.4, 0.25, 0.25, 0.1])
    x = np.where(kind == 1, rng.integers(0, 257, size=size) / np.float32(256), x)
    x = np.where(kind == 2, rng.integers(0, 256, size=size) / np.float32(255), x)
    specials = np.array([0.0, 1.0, 0.5, 0.25, 0.75], dtype=np.float32)
    x = np.where(kind == 3, rng.choice(specials, size=size), x)
    for i, value in enumerate(specials[: min(n // 8, 3)]):
        x[i] = value  # whole samples of one value: 0, 1, 0.5
    return x.astype(np.float32)


def _weight(shape: torch.Size, bits: int, gen: torch.Generator, ties: bool) -> torch.Tensor:
    """Weights over all levels of a unit-scale quantizer; ``ties``: 2 % exact rounding ties."""
    if bits == 1:
        w = torch.randn(shape, generator=gen)
        tie_values = torch.tensor([0.0])
    else:
        levels = 2 ** (bits - 1) - 1
        k = torch.randint(-levels, levels + 1, shape, generator=gen).float()
        w = k + (torch.rand(shape, generator=gen) - 0.5) * 0.8
        tie_values = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    if ties:
        mask = torch.rand(shape, generator=gen) < 0.02
        pick = torch.randint(0, len(tie_values), shape, generator=gen)
        w = torch.where(mask, tie_values[pick], w)
    return w


def _randomize_weights(module: nn.Module, gen: torch.Generator, scale: bool, ties: bool) -> None:
    """Re-draw every QuantConv2d/QuantLinear weight (and bias); ``scale``: random magnitudes."""
    for m in module.modules():
        if not isinstance(m, qnn.QuantConv2d | qnn.QuantLinear):
            continue
        quant = m.quant_weight()
        w = _weight(m.weight.shape, int(quant.bit_width.item()), gen, ties)
        if scale:  # one factor per scale of the weight quantizer (per tensor or channel)
            w = w * (0.05 + 0.2 * torch.rand(quant.scale.shape, generator=gen))
        with torch.no_grad():
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)


def _norm_input_stats(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (BatchNorm) or whole-tensor (TensorNorm) mean and biased variance."""
    if isinstance(norm, TensorNorm):
        return x.mean().reshape(1), x.var(unbiased=False).reshape(1)
    dims = [d for d in range(x.dim()) if d != 1]
    return x.mean(dims), x.var(dims, unbiased=False)


def _calibrate_norm(norm: nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    """Statistics from the layer's real input, perturbed; random gamma (some < 0, some 0), beta."""
    x = getattr(x, "value", x)  # a Brevitas QuantTensor
    mean, var = _norm_input_stats(norm, x.detach())
    var = torch.where(var > 1e-6, var, torch.ones_like(var))
    c = mean.numel()
    mean = mean + var.sqrt() * 0.3 * torch.randn(c, generator=gen)
    var = var * torch.exp((torch.rand(c, generator=gen) * 2 - 1) * np.log(2.0))
    if isinstance(norm, TensorNorm):
        sign = torch.where(torch.rand(1, generator=gen) < 0.3, -1.0, 1.0)
        gamma = sign * (0.5 + 1.5 * torch.rand(1, generator=gen))
    else:
        gamma = torch.randn(c, generator=gen)
        gamma[torch.rand(c, generator=gen) < 0.05] = 0.0
    beta = torch.randn(c, generator=gen) * 0.5
    with torch.no_grad():
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_(gamma)
        norm.bias.copy_(beta)


def _center_bias(layer: nn.Module, y: torch.Tensor, gen: torch.Generator) -> None:
    """Bias that centres the layer's outputs, so a pooled network's arg-max is not constant."""
    y = getattr(y, "value", y).detach()
    mean, std = y.mean(0), y.std(0)
    noise = std * 0.5 * torch.randn(mean.shape, generator=gen)
    with torch.no_grad():
        layer.bias.sub_(mean - noise)


def _calibrate(module: nn.Module, shape: tuple[int, ...], gen: torch.Generator) -> None:
    """One eval-mode pass: each norm layer is calibrated on its input just before it runs.

    A QuantLinear with a bias has it centred on its outputs after it ran.
    """
    hooks = []
    for m in module.modules():
        if isinstance(m, _Norm):
            hooks.append(m.register_forward_pre_hook(lambda n, a: _calibrate_norm(n, a[0], gen)))
        elif isinstance(m, qnn.QuantLinear) and m.bias is not None:
            hooks.append(m.register_forward_hook(lambda n, a, y: _center_bias(n, y, gen)))
    try:
        with torch.no_grad():
            module(torch.rand(_CALIBRATION_BATCH, *shape, generator=gen))
    finally:
        for h in hooks:
            h.remove()


def _degenerate(module: nn.Module, shape: tuple[int, ...], gen: torch.Generator) -> bool:
    """Whether the arg-max of the outputs is one class for all of a batch of random inputs."""
    with torch.no_grad():
        y = module(torch.rand(_DEGENERACY_BATCH, *shape, generator=gen))
    return bool(torch.unique(y.argmax(1)).numel() == 1)


def _randomize(
    module: nn.Module, shape: tuple[int, ...], seed: int, scale: bool, ties: bool
) -> nn.Module:
    """Random weights and calibrated norms until the model is not degenerate; eval mode."""
    module.eval()
    gen = torch.Generator().manual_seed(seed)
    with _quiet():
        for _ in range(_ATTEMPTS):
            _randomize_weights(module, gen, scale, ties)
            _calibrate(module, shape, gen)
            if not _degenerate(module, shape, gen):
                return module
    raise AssertionError(f"seed {seed}: outputs stay degenerate after {_ATTEMPTS} attempts")


def finn_model(name: str, seed: int) -> nn.Module:
    """A FINN ``bnn_pynq`` model (see FINN_MODELS) with seeded random weights and statistics."""
    with _quiet(), torch.random.fork_rng(devices=[]):  # its init draws from the global RNG
        module, _ = model_with_cfg(name, pretrained=False)
    return _randomize(module, input_shape(name), seed, scale=False, ties=True)


class _Residual(nn.Module):
    """Stem conv-BN-ReLU, a conv-BN block added to the stem through one shared quantizer."""

    def __init__(self, bits: int, channels: int, maxima: tuple[float, float, float]) -> None:
        super().__init__()
        relu_max, add_max, out_max = maxima
        self.inp = qnn.QuantIdentity(
            act_quant=Uint8ActPerTensorFloatMaxInit,
            bit_width=8,
            max_val=1.0,
            return_quant_tensor=True,
        )
        self.conv1 = qnn.QuantConv2d(1, channels, 3, padding=1, bias=False, weight_bit_width=bits)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = qnn.QuantReLU(
            act_quant=Uint8ActPerTensorFloatMaxInit,
            bit_width=bits,
            max_val=relu_max,
            return_quant_tensor=True,
        )
        self.conv2 = qnn.QuantConv2d(
            channels,
            channels,
            3,
            padding=1,
            bias=False,
            weight_bit_width=bits,
            weight_scaling_per_output_channel=True,
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.shared = qnn.QuantIdentity(
            act_quant=Int8ActPerTensorFloatMinMaxInit,
            bit_width=bits + 1,
            min_val=-add_max,
            max_val=add_max,
            return_quant_tensor=True,
        )
        self.relu2 = qnn.QuantReLU(
            act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=out_max
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(channels, 10, bias=True, weight_bit_width=bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.relu1(self.bn1(self.conv1(self.inp(x))))
        y = self.shared(self.bn2(self.conv2(s))) + self.shared(s)
        y = self.pool(self.relu2(y))
        return self.fc(torch.flatten(y, 1))


def residual_model(seed: int, bits: int = 2, channels: int = 16, size: int = 12) -> nn.Module:
    """A small Brevitas residual network for input (1, size, size), ``bits`` in 2..4.

    Conv1 has a per-tensor weight scale, conv2 per-output-channel scales; the shortcut add
    sees both operands through one QuantIdentity (bits + 1, signed) so they share a scale.
    """
    if not 2 <= bits <= 4:
        raise ValueError(f"bits must be in 2..4, not {bits}")
    rng = np.random.default_rng(seed)
    maxima = float(rng.uniform(1.0, 3.0)), float(rng.uniform(1.5, 4.0)), float(rng.uniform(1, 3))
    with _quiet(), torch.random.fork_rng(devices=[]):
        module = _Residual(bits, channels, maxima)
    return _randomize(module, (1, size, size), seed, scale=True, ties=False)


class _TruncPool(nn.Module):
    """Conv-BN-QuantReLU, Brevitas' TruncAvgPool2d over the whole map (QONNX ``Trunc``)."""

    def __init__(self, bits: int, channels: int, size: int, relu_max: float) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=8,
                                     max_val=1.0, return_quant_tensor=True)  # fmt: skip
        self.conv = qnn.QuantConv2d(1, channels, 3, padding=1, bias=False, weight_bit_width=bits)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits,
                                  max_val=relu_max, return_quant_tensor=True)  # fmt: skip
        self.pool = qnn.TruncAvgPool2d(kernel_size=size, bit_width=4, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(channels, 10, bias=True, weight_bit_width=bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(self.inp(x))))
        return self.fc(self.pool(x).flatten(1))


def trunc_model(seed: int, bits: int = 3, channels: int = 8, size: int = 8) -> nn.Module:
    """A small Brevitas network whose pool is a ``TruncAvgPool2d`` (exported as
    AveragePool + Trunc); input (1, size, size)."""
    relu_max = float(np.random.default_rng(seed).uniform(1.0, 3.0))
    with _quiet():
        module = _TruncPool(bits, channels, size, relu_max)
    return _randomize(module, (1, size, size), seed, scale=True, ties=False)


def export(
    module: nn.Module,
    shape: tuple[int, ...],
    path: str | os.PathLike[str],
    dynamo: bool | None = None,
) -> Path:
    """Write ``module`` as QONNX for a batch-1 input of ``shape`` (C, H, W); the path."""
    path = Path(path)
    kwargs = {} if dynamo is None else {"dynamo": dynamo}
    example = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    with _quiet():
        export_qonnx(module, example, export_path=str(path), **kwargs)
    return path


_MODELS: dict[tuple[str, int, int], ModelWrapper] = {}


def _load(path: Path) -> ModelWrapper:
    """The ModelWrapper of ``path`` (shapes inferred if missing), cached per file version."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _MODELS:
        model = ModelWrapper(str(path))
        if not model.check_all_tensor_shapes_specified():  # the TorchScript exporter's files
            with _quiet():
                model = model.transform(InferShapes())
        _MODELS[key] = model
    return _MODELS[key]


def reference(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """qonnx's execution of the QONNX file on ``x`` (N, C, H, W); (N, outputs) float32."""
    model = _load(Path(path))
    graph = model.graph
    name, out = graph.input[0].name, graph.output[0].name
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_value
    x = np.ascontiguousarray(x, dtype=np.float32)
    chunks = [x] if batch in (0, len(x)) else [x[i : i + 1] for i in range(len(x))]
    with _quiet():
        ys = [execute_onnx(model, {name: c})[out] for c in chunks]
    return np.concatenate(ys).reshape(len(x), -1).astype(np.float32)


def torch_reference(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The Brevitas module's own output on ``x``; (N, outputs) float32."""
    with torch.no_grad(), _quiet():
        y = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    y = getattr(y, "value", y)
    return y.reshape(len(x), -1).numpy().astype(np.float32)
