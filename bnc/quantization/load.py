"""Reading the float model and the calibration data of ``bnc quantize``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bnc.errors import BncError
from bnc.frontend.load import ALLOWED, _first, _kind, _load_pickle
from bnc.nn.graph import Graph
from bnc.quantization.capture import float_graph

FLOAT_ALLOWED: list[type] = [*ALLOWED, nn.Conv2d, nn.Linear, nn.ReLU, nn.AdaptiveAvgPool2d,
                             nn.Dropout, nn.ModuleDict, Graph]  # fmt: skip
"""torch.save'd float models load with these classes (and bnc's own) without ``--trust``."""

ACCEPTED = (
    "bnc quantize reads float models saved with torch.save, TorchScript archives and"
    " torch.export programs"
)


def load_calibration(path: str | Path, what: str = "--calibration") -> torch.Tensor:
    """X.npy → float32 (N, ...) with N ≥ 1 finite samples, or one line."""
    p = Path(path)
    if not p.is_file():
        raise BncError(f"{path}: no such file ({what})")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise BncError(f"{path}: not a readable .npy array ({_first(e)}); save one with np.save"
                       f" ({what})") from None  # fmt: skip
    if not isinstance(arr, np.ndarray):
        raise BncError(f"{path}: holds several arrays (.npz); pass one .npy array ({what})")
    if arr.dtype.kind != "f":
        raise BncError(f"{path}: dtype {arr.dtype}; {what} takes float32 samples (N, C, H, W)"
                       " as the model takes them")  # fmt: skip
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise BncError(f"{path}: shape {arr.shape}; {what} takes a batch (N, C, H, W) or (N,"
                       " features), N >= 1")  # fmt: skip
    if not np.isfinite(arr).all():
        raise BncError(f"{path}: holds NaN or infinite values ({what})")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def load_float(path: str | Path, shape: tuple[int, ...], trust: bool = False) -> Graph:
    """The float model at ``path`` as a float ``Graph`` over inputs of ``shape``."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise BncError(f"{path}: no such file")
    if path.suffix.lower() == ".onnx":
        raise BncError(f"{path}: an ONNX file; QONNX models are quantized already, compile them"
                       f" with 'bnc compile'; {ACCEPTED}")  # fmt: skip
    if path.stat().st_size == 0:
        raise BncError(f"{path}: not a PyTorch model (empty file); {ACCEPTED}")
    kind = _kind(path)
    if kind == "export":
        try:
            ep = torch.export.load(path)
        except Exception as e:  # noqa: BLE001
            raise BncError(f"{path}: not a readable torch.export program ({_first(e)})") from None
        return float_graph(ep, shape, where)
    if kind == "torchscript":
        return float_graph(_from_torchscript(path, shape), shape, where)
    return float_graph(_load_pickle(path, trust, FLOAT_ALLOWED, ACCEPTED), shape, where)


def _from_torchscript(path: Path, shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    from torch._export.converter import TS2EPConverter

    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; still read it
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(path), map_location="cpu")
            return TS2EPConverter(scripted, (torch.zeros(1, *shape),)).convert()
    except Exception as e:  # noqa: BLE001
        raise BncError(f"{path}: a TorchScript archive bnc could not read ({_first(e)});"
                       " save the model with torch.export.save instead") from None  # fmt: skip
