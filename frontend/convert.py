"""An eval-mode module or a torch.export program → the import-level IR graph.

One path: the module is exported with ``torch.export``, and the program's data flow is
followed node by node. ATen nodes that come from one call of a supported layer (its
``nn_module_stack`` entry) form a group; the group's one outside tensor operand is the op's
operand, its last node the op's result, and one table (``MODULES``) maps the layer type to
the function that builds its IR op, with tensors read by their fully qualified names and
hyper-parameters from the nodes' arguments. Every other node (``x + y``, ``torch.cat``,
``flatten``, pools called as functions) is mapped by a second table (``ATEN``) keyed by the
ATen op. A loaded ``.pt2`` program and a live module are read the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

import bnc.nn as bn
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph, GraphError, Node
from bnc.ir.types import real

LEVEL_QUANTIZERS = {
    q.__name__: q
    for q in (bn.TernaryQuantizer, bn.IntQuantizer, bn.MultiBitQuantizer, bn.CodebookQuantizer)
}
"""Weight quantizers imported as ``QuantConv2d`` / ``QuantLinear``: class name → the class,
rebuilt from its state dict entries (``from_state_dict``) to compute the codes."""
INNER = {"GDQ", "SymmetricQuantizer", *LEVEL_QUANTIZERS}
CONTAINERS = {"Sequential", "Residual", "Concat", "Graph", "ModuleList", "ModuleDict"}
SUPPORTED = (
    "bnc.nn InputQuantizer, Sign, ActQuantizer, BinaryConv2d, BinaryLinear (quantizer gdq,"
    " symmetric, ternary, int, multibit or a CodebookQuantizer), Residual, Concat and torch.nn"
    " BatchNorm1d/2d, MaxPool2d, AdaptiveAvgPool2d(1), AvgPool2d (over the whole map), Flatten,"
    " Dropout, Identity; in forward: +, torch.cat(dim=1), flatten, view/reshape to (N, -1), mean"
    " over H and W"
)
_IGNORED = {"detach", "clone", "alias", "dropout", "contiguous", "_assert_tensor_metadata"}


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def check_module_tree(module: nn.Module, where: str) -> None:
    """Refuse, before exporting, any leaf layer bnc cannot compile."""
    for path, sub in module.named_modules():
        cls = type(sub).__name__
        if cls in MODULES or cls in INNER:
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
            elif isinstance(sub, nn.AdaptiveAvgPool2d) and _pair(sub.output_size, 1) != (1, 1):
                raise BncError(
                    f"{where}: layer '{path}' (AdaptiveAvgPool2d): only output size 1 (a global"
                    f" average pool) is supported, not {sub.output_size}"
                )
            continue
        leaf = not list(sub.children()) or isinstance(sub, nn.Conv2d | nn.Linear)
        if cls in CONTAINERS or not leaf:
            continue  # a container: its leaves are checked, its data flow is exported
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


def _aten(node: torch.fx.Node) -> str:
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


class _Group:
    """The ATen nodes of one call of a supported layer."""

    def __init__(self, key: str, path: str, cls: str, inner: dict[str, str]) -> None:
        self.key, self.path, self.cls, self.inner = key, path, cls, inner
        self.nodes: list[torch.fx.Node] = []

    def find(self, *names: str) -> torch.fx.Node | None:
        for n in self.nodes:
            if _aten(n) in names:
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
    for i, (key, (path, type_name)) in enumerate(stack.items()):
        cls = _short(str(type_name))
        if cls in MODULES:
            entries = list(stack.values())[i + 1 :]
            inner = {_short(str(t)): p for p, t in entries}
            return _Group(str(key), str(path), cls, inner)
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


State = Mapping[str, torch.Tensor]


def _codes(g: _Group, w: torch.Tensor, state: State) -> tuple[np.ndarray, np.ndarray] | None:
    """``(index, levels)`` of a multi-level weight quantizer, None for a two-level one. The
    quantizer is rebuilt from its state dict entries and computes the codes itself, with the
    float32 operations of its forward, so the levels are the trained weights exactly."""
    name = next((n for n in LEVEL_QUANTIZERS if n in g.inner), None)
    if name is None:
        return None
    prefix = f"{g.inner[name]}."
    entries = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        index, levels = LEVEL_QUANTIZERS[name].from_state_dict(entries).codes(w.detach())
    except (ValueError, RuntimeError) as e:
        raise BncError(f"layer '{g.path}' ({g.cls}): {_first_line(e)}") from None
    return index.cpu().numpy().astype(np.int64), levels.to(torch.float64).cpu().numpy()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _input_quantizer(g: _Group, state: State) -> O.Op:
    p = g.path
    scale, qmin, qmax = (state[f"{p}.{k}"] for k in ("scale", "qmin", "qmax"))
    return O.QuantizeInput(p, float(scale), int(qmin), int(qmax))


def _act_quantizer(g: _Group, state: State) -> O.Op:
    """``ActQuantizer`` → ``Quantize`` with zero point 0; the op's ``infer`` refuses a
    non-positive or non-finite scale and widths outside 1..8 bits, naming the layer."""
    p = g.path
    scale, qmin, qmax = (float(state[f"{p}.{k}"].detach()) for k in ("scale", "qmin", "qmax"))
    if not all(math.isfinite(v) and v.is_integer() for v in (qmin, qmax)):
        raise BncError(f"layer '{p}' (ActQuantizer): codes [{qmin:g}, {qmax:g}] must be integers")
    return O.Quantize(p, scale, 0, int(qmin), int(qmax))


def _binary(g: _Group, state: State) -> O.Op:
    p = g.path
    w = state[f"{p}.weight"]
    bias_t = state.get(f"{p}.bias")
    bias = _f64(bias_t) if bias_t is not None else np.zeros(w.shape[0])
    codes = _codes(g, w, state)  # multi-level weights, else b = 1[w > 0] and two levels
    b = (w.detach() > 0).cpu().numpy()
    if g.cls == "BinaryLinear":
        if codes is not None:
            return O.QuantLinear(p, *codes, bias)
        return O.BinaryLinear(p, b, *_levels(g, w, state), bias)
    conv = g.find("conv2d", "convolution")
    assert conv is not None
    if _pair(_arg(conv, "dilation", 1), 1) != (1, 1) or _arg(conv, "groups", 1) != 1:
        raise BncError(f"layer '{p}' (BinaryConv2d): only dilation 1 and groups 1")
    stride, padding = _pair(_arg(conv, "stride", 1), 1), _pair(_arg(conv, "padding", 0), 0)
    if codes is not None:
        return O.QuantConv2d(p, *codes, bias, stride, padding)
    return O.BinaryConv2d(p, b, *_levels(g, w, state), bias, stride, padding)


def _batch_norm(g: _Group, state: State) -> O.Op:
    p = g.path
    node = g.find("batch_norm", "_native_batch_norm_legit_no_training")
    eps = float(_arg(node, "eps", 1e-5)) if node is not None else 1e-5
    mean, var = _f64(state[f"{p}.running_mean"]), _f64(state[f"{p}.running_var"])
    c = mean.shape[0]
    gamma = _f64(state[f"{p}.weight"]) if f"{p}.weight" in state else np.ones(c)
    beta = _f64(state[f"{p}.bias"]) if f"{p}.bias" in state else np.zeros(c)
    return O.BatchNorm(p, gamma, beta, mean, var, eps)


def _group_node(name: str) -> Callable[[_Group, State], O.Op]:
    """A layer that is one ATen call: imported as that call (``ATEN``), named by the layer."""

    def build(g: _Group, state: State) -> O.Op:
        node = next((n for n in g.nodes if _aten(n) in ATEN), None)
        if node is None:
            raise BncError(f"layer '{g.path}' ({g.cls}): no {name} call in the program")
        op = ATEN[_aten(node)](node, g.path)
        assert op is not None
        return op

    return build


MODULES: dict[str, Callable[[_Group, State], O.Op | None]] = {
    "InputQuantizer": _input_quantizer,
    "ActQuantizer": _act_quantizer,
    "Sign": lambda g, _s: O.Sign(g.path),
    "BinaryConv2d": _binary,
    "BinaryLinear": _binary,
    "BatchNorm1d": _batch_norm,
    "BatchNorm2d": _batch_norm,
    "MaxPool2d": _group_node("max_pool2d"),
    "AdaptiveAvgPool2d": _group_node("adaptive_avg_pool2d"),
    "AvgPool2d": _group_node("avg_pool2d"),
    "Flatten": lambda g, _s: O.Flatten(g.path),
    "Dropout": lambda _g, _s: None,
    "Identity": lambda _g, _s: None,
}
"""Supported layer types (class name) → the function that builds the layer's IR op (None: the
layer passes its operand on)."""


def _max_pool(node: torch.fx.Node, name: str) -> O.Op:
    kernel = _pair(_arg(node, "kernel_size", None), 1)
    stride = _pair(_arg(node, "stride", None), 0)
    if stride == (0, 0):
        stride = kernel
    if _pair(_arg(node, "dilation", 1), 1) != (1, 1) or bool(_arg(node, "ceil_mode", False)):
        raise BncError(f"layer '{name}' (max_pool2d): dilation and ceil_mode are not supported")
    return O.MaxPool2d(name, kernel, stride, _pair(_arg(node, "padding", 0), 0))


def _shape(node: torch.fx.Node) -> tuple[int, ...]:
    val = node.meta.get("val")
    return tuple(int(d) for d in val.shape) if val is not None else ()


def _avg_pool(node: torch.fx.Node, name: str) -> O.Op:
    """``avg_pool2d`` is supported where one window covers the whole map (a global pool)."""
    x = node.args[0]
    h, w = _shape(x)[-2:]
    kernel = _pair(_arg(node, "kernel_size", None), 1)
    padding = _pair(_arg(node, "padding", 0), 0)
    if kernel != (h, w) or padding != (0, 0) or bool(_arg(node, "ceil_mode", False)):
        raise BncError(
            f"layer '{name}' (avg_pool2d): only a pool over the whole {h}x{w} map without"
            f" padding is supported (a global average pool), not kernel {kernel[0]}x{kernel[1]}"
            f" with padding {padding}"
        )
    return O.GlobalAvgPool(name)


def _adaptive(node: torch.fx.Node, name: str) -> O.Op:
    size = _pair(_arg(node, "output_size", None), 1)
    if size != (1, 1):
        raise BncError(f"layer '{name}' (adaptive_avg_pool2d): only output size 1 is supported")
    return O.GlobalAvgPool(name)


def _mean(node: torch.fx.Node, name: str) -> O.Op:
    dims = _arg(node, "dim", None)
    rank = len(_shape(node.args[0]))
    if dims is None or sorted(int(d) % rank for d in dims) != [rank - 2, rank - 1] or rank != 4:
        raise BncError(
            f"layer '{name}' (mean): only the mean over height and width of an N,C,H,W tensor"
            f" is supported, not over dims {dims}"
        )
    return O.GlobalAvgPool(name)


def _cat(node: torch.fx.Node, name: str) -> O.Op:
    dim = int(_arg(node, "dim", 0))
    rank = len(_shape(node))
    if dim % max(rank, 1) != 1:
        raise BncError(f"layer '{name}' (cat): only concatenation along channels (dim=1)")
    return O.Concat(name)


def _add(node: torch.fx.Node, name: str) -> O.Op:
    if not all(isinstance(a, torch.fx.Node) for a in node.args[:2]) or (
        _arg(node, "alpha", 1) != 1
    ):
        raise BncError(
            f"layer '{name}' (add): only the sum of two tensors is supported (a residual add),"
            " not a constant or a scaled add"
        )
    return O.Add(name)


def _reshape(node: torch.fx.Node, name: str) -> O.Op | None:
    """``flatten(x, 1)`` and ``view``/``reshape`` to (N, -1) are ``Flatten``."""
    target = _aten(node)
    if target == "flatten":
        if int(_arg(node, "start_dim", 0)) != 1 or int(_arg(node, "end_dim", -1)) not in (-1, 3):
            raise BncError(f"layer '{name}' (flatten): only flatten(x, 1) is supported")
        return O.Flatten(name)
    out, src = _shape(node), _shape(node.args[0])
    if len(out) == 2 and out[0] == src[0]:
        return O.Flatten(name)
    raise BncError(
        f"layer '{name}' ({target}): only a reshape to (N, -1) is supported, not {src} to {out}"
    )


ATEN: dict[str, Callable[[torch.fx.Node, str], O.Op | None]] = {
    "max_pool2d": _max_pool,
    "max_pool2d_with_indices": _max_pool,
    "avg_pool2d": _avg_pool,
    "adaptive_avg_pool2d": _adaptive,
    "_adaptive_avg_pool2d": _adaptive,
    "mean": _mean,
    "cat": _cat,
    "concat": _cat,
    "add": _add,
    "flatten": _reshape,
    "view": _reshape,
    "reshape": _reshape,
    "_unsafe_view": _reshape,
}
"""ATen ops outside supported layers → the function that builds the IR op."""


def _site(node: torch.fx.Node) -> str:
    """A name for an op outside supported layers: the module whose ``forward`` calls it (a
    ``Residual``'s add is named by the block), else the program's node name."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [str(p) for p, _t in stack.values() if str(p)]
    return paths[-1] if paths else node.name


def _tensor_args(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The node's tensor operands, in order (``cat`` takes a list)."""
    out: list[torch.fx.Node] = []
    for a in node.args:
        items = a if isinstance(a, list | tuple) else [a]
        out += [x for x in items if isinstance(x, torch.fx.Node)]
    return out


def program_to_graph(ep: torch.export.ExportedProgram, shape: tuple[int, ...], where: str) -> Graph:
    state: dict[str, torch.Tensor] = {**ep.state_dict, **ep.constants}  # type: ignore[dict-item]
    users = set(ep.graph_signature.user_inputs)
    inputs = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in users]
    if len(inputs) != 1:
        raise BncError(f"{where}: the program takes {len(inputs)} inputs; bnc compiles one")
    env: dict[torch.fx.Node, str] = {inputs[0]: INPUT}
    nodes: list[Node] = []
    group: _Group | None = None

    def emit(op: O.Op | None, operands: list[torch.fx.Node], result: torch.fx.Node) -> None:
        args = [env[a] for a in operands if a in env]
        if op is None:  # passes its operand on
            if args:
                env[result] = args[0]
            return
        if len(args) != len(operands):
            missing = next(a for a in operands if a not in env)
            raise BncError(
                f"{where}: layer '{op.name}' reads '{missing.name}', which is not a tensor"
                " bnc computes (a constant or an unsupported operation)"
            )
        env[result] = f"%{len(nodes)}"
        nodes.append(Node(op, tuple(args), env[result]))

    def flush() -> None:
        if group is None:
            return
        inside = set(group.nodes)
        outside = list(dict.fromkeys(a for n in group.nodes for a in _tensor_args(n)
                                     if a not in inside and a in env))  # fmt: skip
        if len(outside) > 1:
            names = ", ".join(a.name for a in outside)
            raise BncError(f"{where}: layer '{group.path}' ({group.cls}) reads several tensors"
                           f" ({names}); bnc layers take one")  # fmt: skip
        try:
            op = MODULES[group.cls](group, state)
        except BncError as e:
            raise BncError(f"{where}: {e}") from None
        emit(op, outside, group.nodes[-1])

    for node in ep.graph.nodes:
        if node.op != "call_function":
            if node.op == "output":
                flush()
                group = None
            continue
        g = _layer_of(node)
        if g is not None:
            if group is None or group.key != g.key:
                flush()
                group = g
            group.nodes.append(node)
            continue
        flush()
        group = None
        name = _aten(node)
        operands = [a for a in _tensor_args(node) if a in env]
        if name in _IGNORED or name == "getitem":
            if operands:
                env[node] = env[operands[0]]
            continue
        if name not in ATEN:
            raise BncError(
                f"{where}: operation '{name}' ({node.name}) is not supported by bnc;"
                f" supported: {SUPPORTED}"
            )
        emit(ATEN[name](node, _site(node)), _tensor_args(node), node)
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    results = _tensor_args(out_node)
    if len(results) != 1 or results[0] not in env:
        raise BncError(f"{where}: the program must return one tensor computed from its input")
    dims = tuple(shape) + (1,) * (3 - len(shape))
    graph = Graph(real(dims), tuple(nodes), env[results[0]]).pruned()  # type: ignore[arg-type]
    try:
        graph.verify()
    except (O.ShapeError, GraphError) as e:
        raise BncError(f"{where}: {e}") from None
    if INPUT not in graph.live():
        raise BncError(f"{where}: the program's output does not depend on its input")
    return graph.canonical()
