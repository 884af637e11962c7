"""An eval-mode module or a torch.export program → the import-level IR graph.

One path: the module is exported with ``torch.export``; the program's ATen nodes are grouped
by the supported layer (``nn_module_stack``) they came from; each group becomes one IR op,
with tensors read by their fully qualified names and hyper-parameters from the node's
arguments, so a loaded ``.pt2`` program and a live module are read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.types import real

LAYERS = {
    "InputQuantizer": "input quantizer",
    "Sign": "sign",
    "BinaryConv2d": "binary conv",
    "BinaryLinear": "binary linear",
    "BatchNorm1d": "batch norm",
    "BatchNorm2d": "batch norm",
    "MaxPool2d": "max pool",
    "Flatten": "flatten",
    "Dropout": "identity",
    "Identity": "identity",
}
INNER = {"GDQ", "SymmetricQuantizer"}
SUPPORTED = (
    "bnc.nn InputQuantizer, Sign, BinaryConv2d, BinaryLinear and torch.nn BatchNorm1d/2d, "
    "MaxPool2d, Flatten, Dropout, Identity"
)
_IGNORED = {"detach", "clone", "alias", "dropout", "contiguous", "_assert_tensor_metadata"}


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def check_module_tree(module: nn.Module, where: str) -> None:
    """Refuse, before exporting, any leaf layer bnc cannot compile."""
    for path, sub in module.named_modules():
        cls = type(sub).__name__
        if cls in LAYERS or cls in INNER:
            if isinstance(sub, nn.MaxPool2d):
                if sub.ceil_mode or sub.dilation not in (1, (1, 1)):
                    raise BncError(
                        f"{where}: layer '{path}' (MaxPool2d): ceil_mode and "
                        "dilation are not supported"
                    )
            elif isinstance(sub, bn.BinaryConv2d):
                if sub.dilation != (1, 1) or sub.groups != 1 or sub.padding_mode != "zeros":
                    raise BncError(
                        f"{where}: layer '{path}' (BinaryConv2d): only dilation 1, "
                        "groups 1 and zero padding are supported"
                    )
            continue
        if list(sub.children()) and not isinstance(sub, nn.Conv2d | nn.Linear):
            continue  # a container: its leaves are checked
        raise BncError(
            f"{where}: layer '{path or '<model>'}' is {cls}, which bnc cannot "
            f"compile; supported: {SUPPORTED}"
        )


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().reshape(-1)


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        return (default, default)
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[-1])) if len(v) else (default, default)


class _Group:
    def __init__(self, path: str, cls: str, inner: dict[str, str]) -> None:
        self.path, self.cls, self.inner = path, cls, inner
        self.nodes: list[torch.fx.Node] = []

    def find(self, *names: str) -> torch.fx.Node | None:
        for n in self.nodes:
            if getattr(n.target, "__name__", "").split(".")[0] in names:
                return n
        return None


def _arg(node: torch.fx.Node, name: str, default: Any) -> Any:
    """Argument ``name`` of an ATen call, found by the op's schema (positions differ between
    overloads: ``aten.batch_norm`` ends with ``cudnn_enabled``, not ``eps``)."""
    if name in node.kwargs:
        return node.kwargs[name]
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        raise BncError(
            f"operation '{node.name}' ({node.target}) has no schema to read '{name}' from"
        )
    for i, arg in enumerate(schema.arguments):
        if arg.name == name:
            return node.args[i] if i < len(node.args) else default
    raise BncError(f"operation '{node.name}' ({node.target}) has no argument '{name}'")


def _layer_of(node: torch.fx.Node) -> _Group | None:
    stack = node.meta.get("nn_module_stack") or {}
    entries = list(stack.values())
    for i, (path, type_name) in enumerate(entries):
        cls = _short(str(type_name))
        if cls in LAYERS:
            inner = {_short(str(t)): p for p, t in entries[i + 1 :]}
            return _Group(str(path), cls, inner)
    return None


def _levels(g: _Group, w: torch.Tensor, state: Mapping[str, torch.Tensor]):
    o = w.shape[0]
    if "GDQ" in g.inner:
        p = g.inner["GDQ"]
        tau, phi = _f64(state[f"{p}.tau"]), _f64(state[f"{p}.phi"])
        return np.broadcast_to(phi - tau, (o,)).copy(), np.broadcast_to(phi + tau, (o,)).copy()
    if "SymmetricQuantizer" in g.inner:
        mean = g.find("mean")
        per_channel = mean is not None and "dim" in str(mean.target)
        a = w.detach().abs().reshape(o, -1)
        s = a.mean(dim=1) if per_channel else a.mean().expand(o)
        return -_f64(s), _f64(s)
    raise BncError(f"layer '{g.path}' ({g.cls}) has no bnc.nn weight quantizer")


def _op(g: _Group, state: Mapping[str, torch.Tensor]) -> O.Op | None:
    p = g.path
    if g.cls == "InputQuantizer":
        return O.QuantizeInput(
            p, float(state[f"{p}.scale"]), int(state[f"{p}.qmin"]), int(state[f"{p}.qmax"])
        )
    if g.cls == "Sign":
        return O.Sign(p)
    if g.cls in ("BinaryConv2d", "BinaryLinear"):
        w = state[f"{p}.weight"]
        bias_t = state.get(f"{p}.bias")
        bias = _f64(bias_t) if bias_t is not None else np.zeros(w.shape[0])
        alpha, beta = _levels(g, w, state)
        b = (w.detach() > 0).cpu().numpy()
        if g.cls == "BinaryLinear":
            return O.BinaryLinear(p, b, alpha, beta, bias)
        conv = g.find("conv2d", "convolution")
        assert conv is not None
        if _pair(_arg(conv, "dilation", 1), 1) != (1, 1) or _arg(conv, "groups", 1) != 1:
            raise BncError(f"layer '{p}' (BinaryConv2d): only dilation 1 and groups 1")
        stride, padding = _arg(conv, "stride", 1), _arg(conv, "padding", 0)
        return O.BinaryConv2d(p, b, alpha, beta, bias, _pair(stride, 1), _pair(padding, 0))
    if g.cls.startswith("BatchNorm"):
        node = g.find("batch_norm", "_native_batch_norm_legit_no_training")
        eps = float(_arg(node, "eps", 1e-5)) if node is not None else 1e-5
        mean, var = _f64(state[f"{p}.running_mean"]), _f64(state[f"{p}.running_var"])
        c = mean.shape[0]
        gamma = _f64(state[f"{p}.weight"]) if f"{p}.weight" in state else np.ones(c)
        beta = _f64(state[f"{p}.bias"]) if f"{p}.bias" in state else np.zeros(c)
        return O.BatchNorm(p, gamma, beta, mean, var, eps)
    if g.cls == "MaxPool2d":
        node = g.find("max_pool2d", "max_pool2d_with_indices")
        assert node is not None
        return _pool(p, node)
    if g.cls == "Flatten":
        return O.Flatten(p)
    return None  # Dropout, Identity


def _pool(name: str, node: torch.fx.Node) -> O.MaxPool2d:
    kernel = _pair(_arg(node, "kernel_size", None), 1)
    stride = _pair(_arg(node, "stride", None), 0)
    if stride == (0, 0):
        stride = kernel
    if _pair(_arg(node, "dilation", 1), 1) != (1, 1) or bool(_arg(node, "ceil_mode", False)):
        raise BncError(f"layer '{name}' (max_pool2d): dilation and ceil_mode are not supported")
    return O.MaxPool2d(name, kernel, stride, _pair(_arg(node, "padding", 0), 0))


def _functional(node: torch.fx.Node, where: str) -> O.Op | None:
    name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    if name in _IGNORED or node.op != "call_function":
        return None
    if name == "flatten" or (name in ("view", "reshape") and len(node.args[1]) == 2):
        return O.Flatten(node.name)
    if name in ("max_pool2d", "max_pool2d_with_indices"):
        return _pool(node.name, node)
    if name == "getitem":
        return None
    raise BncError(
        f"{where}: operation '{name}' ({node.name}) is not supported by bnc; supported: {SUPPORTED}"
    )


def program_to_graph(ep: torch.export.ExportedProgram, shape: tuple[int, ...], where: str) -> Graph:
    state: dict[str, torch.Tensor] = {**ep.state_dict, **ep.constants}  # type: ignore[dict-item]
    ops: list[O.Op] = []
    current: _Group | None = None

    def flush() -> None:
        if current is not None:
            op = _op(current, state)
            if op is not None:
                ops.append(op)

    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        g = _layer_of(node)
        if g is None:
            flush()
            current = None
            op = _functional(node, where)
            if op is not None:
                ops.append(op)
            continue
        if current is None or current.path != g.path:
            flush()
            current = g
        current.nodes.append(node)
    flush()
    dims = tuple(shape) + (1,) * (3 - len(shape))
    graph = Graph(real(dims), tuple(ops))  # type: ignore[arg-type]
    try:
        graph.verify()
    except O.ShapeError as e:
        raise BncError(f"{where}: {e}") from None
    return graph
