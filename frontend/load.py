"""Reading model files: torch.save modules (allow-listed), TorchScript, torch.export."""

from __future__ import annotations

import collections
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.frontend.convert import check_module_tree, program_to_graph
from bnc.ir.graph import Graph

ACCEPTED = (
    "bnc reads torch.save modules, TorchScript archives, torch.export programs and QONNX .onnx"
    " files"
)

ALLOWED: list[type] = [
    nn.Sequential,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.Flatten,
    nn.ModuleList,
    nn.Dropout,
    nn.Identity,
    bn.InputQuantizer,
    bn.ActQuantizer,
    bn.Sign,
    bn.BinaryConv2d,
    bn.BinaryLinear,
    bn.Residual,
    bn.Concat,
    bn.Graph,
    nn.ModuleDict,
    bn.GDQ,
    bn.SymmetricQuantizer,
    bn.TernaryQuantizer,
    bn.IntQuantizer,
    bn.MultiBitQuantizer,
    bn.CodebookQuantizer,
    collections.OrderedDict,
    set,
]


@dataclass(frozen=True)
class Imported:
    graph: Graph
    name: str
    source_format: str  # "pickle" | "torchscript" | "export" | "module" | "qonnx"
    input_shape: tuple[int, ...]


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,28,28' → (1, 28, 28); one to three positive integers."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not 1 <= len(dims) <= 3 or any(d < 1 for d in dims):
        raise BncError(
            f"--input-shape '{text}': expected C,H,W (or a feature count) as positive "
            "integers, e.g. 1,28,28"
        )
    return dims


def _recorded_shape(module: nn.Module) -> tuple[int, ...] | None:
    for sub in module.modules():
        if isinstance(sub, bn.InputQuantizer) and sub.input_shape.numel() > 0:
            return tuple(int(d) for d in sub.input_shape.tolist())
    return None


def _resolve_shape(
    where: str, recorded: tuple[int, ...] | None, given: tuple[int, ...] | None
) -> tuple[int, ...]:
    if recorded is not None and given is not None and tuple(recorded) != tuple(given):
        raise BncError(
            f"{where}: the model records input shape {','.join(map(str, recorded))} but "
            f"--input-shape is {','.join(map(str, given))}"
        )
    shape = recorded if recorded is not None else given
    if shape is None:
        raise BncError(
            f"{where}: the model does not record its input shape; pass --input-shape C,H,W "
            "(e.g. 1,28,28)"
        )
    return tuple(shape)


def from_module(
    module: nn.Module,
    example: torch.Tensor | tuple[int, ...],
    where: str | None = None,
    source_format: str = "module",
) -> Imported:
    """Import an in-memory module; ``example`` is a batch (1, C, H, W) or a shape."""
    where = where or type(module).__name__
    shape = tuple(example.shape[1:]) if isinstance(example, torch.Tensor) else tuple(example)
    if _is_brevitas(module):
        from bnc.frontend.qonnx import from_brevitas

        graph, shape = from_brevitas(module, where, shape)
        return Imported(graph, Path(where).stem, "brevitas", shape)
    check_module_tree(module, where)
    module = module.eval()
    try:
        ep = torch.export.export(module, (torch.zeros(1, *shape),))
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BncError(
            f"{where}: input shape {','.join(map(str, shape))} does not fit the model ({first})"
        ) from None
    return Imported(program_to_graph(ep, shape, where), Path(where).stem, source_format, shape)


def _kind(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        return "pickle"
    try:
        names = zipfile.ZipFile(path).namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise BncError(f"{path}: not a PyTorch model (broken zip: {e}); {ACCEPTED}") from None
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("models/model.json") or "serialized_exported_program" in n for n in names):
        return "export"
    return "pickle"


def _load_pickle(
    path: Path, trust: bool, allowed: list[type] = ALLOWED, accepted: str = ACCEPTED
) -> nn.Module:
    """A torch.save'd whole module, loaded with the ``allowed`` classes only unless ``trust``;
    every failure is one line."""
    try:
        if trust:
            obj = torch.load(path, weights_only=False, map_location="cpu")
        else:
            with torch.serialization.safe_globals(allowed):
                obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m and "was not an allowed global" in str(e):
            raise BncError(
                f"{path}: class {m.group(1)} is outside the allow-list of bnc.nn and torch.nn "
                "classes; pass --trust (only for files you trust) to load it with full pickle"
            ) from None
        raise BncError(f"{path}: not a PyTorch model ({_first(e)}); {accepted}") from None
    except Exception as e:  # noqa: BLE001
        raise BncError(f"{path}: not a PyTorch model ({_first(e)}); {accepted}") from None
    if not isinstance(obj, nn.Module):
        raise BncError(
            f"{path}: holds a {type(obj).__name__}, not a whole module; save the model with "
            "torch.save(model), not its state_dict"
        )
    return obj


def _is_brevitas(module: nn.Module) -> bool:
    return any(type(m).__module__.startswith("brevitas.") for m in module.modules())


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def load_model(
    path: Path, input_shape: tuple[int, ...] | None = None, trust: bool = False
) -> Imported:
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise BncError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BncError(f"{path}: not a PyTorch model (empty file); {ACCEPTED}")
    if path.suffix.lower() == ".onnx":
        from bnc.frontend.qonnx import onnx_to_graph, read_onnx

        graph, shape = onnx_to_graph(read_onnx(path), where, input_shape)
        return Imported(graph, path.stem, "qonnx", shape)
    kind = _kind(path)
    if kind == "export":
        try:
            ep = torch.export.load(path)
        except Exception as e:  # noqa: BLE001
            raise BncError(f"{path}: not a readable torch.export program ({_first(e)})") from None
        user = ep.graph_signature.user_inputs[0]
        node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user)
        recorded = tuple(int(d) for d in node.meta["val"].shape[1:])
        shape = _resolve_shape(where, recorded, input_shape)
        return Imported(program_to_graph(ep, shape, where), path.stem, "export", shape)
    if kind == "torchscript":
        from bnc.frontend.script import rebuild

        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; still read it
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise BncError(f"{path}: not a readable TorchScript archive ({_first(e)})") from None
        module = rebuild(scripted, where)
    else:
        module = _load_pickle(path, trust)
        if _is_brevitas(module):
            from bnc.frontend.qonnx import from_brevitas

            graph, shape = from_brevitas(module, where, input_shape)
            return Imported(graph, path.stem, "brevitas", shape)
    shape = _resolve_shape(where, _recorded_shape(module), input_shape)
    imported = from_module(module, shape, where, kind)
    return Imported(imported.graph, path.stem, kind, shape)
