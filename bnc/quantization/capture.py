"""A float model → a ``bnc.nn.Graph`` of the same float layers, read off its ``torch.export``
program, so that quantizing is replacing layers by name in a plain data-flow graph.

Any model ``torch.export`` can trace is read the same way: ``nn.Sequential`` trees, models
with their own ``forward`` (``out = relu(bn(conv(x)) + x)``), loaded ``.pt2`` programs. Each
ATen call becomes one step: ``conv2d`` → ``nn.Conv2d``, ``linear`` → ``nn.Linear``,
``batch_norm`` → ``nn.BatchNorm1d/2d``, ``relu`` → ``nn.ReLU``, pools, ``flatten`` (and views
to (N, -1)), ``add`` of two tensors and ``cat`` along channels; the layers carry copies of
the program's parameters, so the graph computes what the model computes. Anything else is
refused with one line naming the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bnc.errors import BncError
from bnc.frontend.convert import _arg, _aten, _pair, _shape, _tensor_args
from bnc.nn.graph import Graph

SUPPORTED = (
    "nn.Conv2d (groups 1, dilation 1, zero padding), nn.Linear, nn.BatchNorm1d/2d, nn.ReLU,"
    " nn.MaxPool2d, nn.AvgPool2d / AdaptiveAvgPool2d(1) / mean over H and W (global average"
    " pools), nn.Flatten, nn.Dropout, nn.Identity; in forward: +, torch.cat(dim=1),"
    " flatten, view/reshape to (N, -1)"
)
_PASS = {"detach", "clone", "alias", "dropout", "contiguous", "_assert_tensor_metadata",
         "feature_dropout", "alpha_dropout"}  # fmt: skip


class _Reader:
    """The program's tensors by node, and one name per step."""

    def __init__(self, ep: torch.export.ExportedProgram, where: str) -> None:
        self.where = where
        sig = ep.graph_signature
        state = {**ep.state_dict, **ep.constants}
        self.tensors: dict[str, torch.Tensor] = {}
        for mapping in (sig.inputs_to_parameters, sig.inputs_to_buffers,
                        getattr(sig, "inputs_to_lifted_tensor_constants", {})):  # fmt: skip
            for placeholder, fqn in mapping.items():
                if fqn in state:
                    self.tensors[placeholder] = state[fqn].detach().clone()
        self.used: set[str] = set()

    def tensor(self, node: Any, what: str, site: str) -> torch.Tensor | None:
        if node is None:
            return None
        if not isinstance(node, torch.fx.Node) or node.name not in self.tensors:
            raise BncError(f"{self.where}: layer '{site}': its {what} is not a parameter or a"
                           " buffer of the model")  # fmt: skip
        return self.tensors[node.name]

    def name(self, node: torch.fx.Node, kind: type | None) -> str:
        """The module path of the layer that made ``node`` when it is a ``kind`` (``3.c1`` →
        ``3_c1``), else the program's node name; unique."""
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        base = node.name
        if stack and kind is not None:
            path, type_name = stack[-1]
            if str(type_name).rsplit(".", 1)[-1] == kind.__name__ and str(path):
                base = str(path).replace(".", "_")
        name, n = base, 1
        while name in self.used or name == "input":
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name

    def site(self, node: torch.fx.Node) -> str:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        return str(stack[-1][0]) if stack and str(stack[-1][0]) else node.name


def _conv(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    w = r.tensor(node.args[1], "weight", site)
    b = r.tensor(_arg(node, "bias", None), "bias", site)
    stride, padding = _arg(node, "stride", [1, 1]), _arg(node, "padding", [0, 0])
    dilation, groups = _arg(node, "dilation", [1, 1]), int(_arg(node, "groups", 1))
    if isinstance(padding, str) or _pair(dilation, 1) != (1, 1) or groups != 1:
        raise BncError(f"{r.where}: layer '{site}' (Conv2d): only groups 1, dilation 1 and"
                       f" integer zero padding can be quantized (padding {padding!r}, dilation"
                       f" {dilation}, groups {groups})")  # fmt: skip
    assert w is not None
    o, c, kh, kw = w.shape
    layer = nn.Conv2d(c, o, (kh, kw), _pair(stride, 1), _pair(padding, 0), bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return layer


def _linear(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    w = r.tensor(node.args[1], "weight", site)
    b = r.tensor(_arg(node, "bias", None), "bias", site)
    assert w is not None
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return layer


def _batch_norm(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    name = _aten(node)
    if name == "batch_norm" and bool(_arg(node, "training", False)):
        raise BncError(f"{r.where}: layer '{site}' (BatchNorm) runs in training mode; save the"
                       " model after model.eval()")  # fmt: skip
    args = node.args
    w, b = r.tensor(args[1], "weight", site), r.tensor(args[2], "bias", site)
    mean, var = r.tensor(args[3], "running mean", site), r.tensor(args[4], "running var", site)
    eps = float(_arg(node, "eps", 1e-5))
    assert mean is not None and var is not None
    rank = len(_shape(node.args[0]))
    cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
    layer = cls(mean.numel(), eps=eps).eval()
    with torch.no_grad():
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)
        layer.weight.copy_(w if w is not None else torch.ones_like(mean))
        layer.bias.copy_(b if b is not None else torch.zeros_like(mean))
    return layer


def _max_pool(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    k = _pair(_arg(node, "kernel_size", None), 1)
    s = _pair(_arg(node, "stride", None) or k, 1)
    p = _pair(_arg(node, "padding", 0), 0)
    if _pair(_arg(node, "dilation", 1), 1) != (1, 1) or bool(_arg(node, "ceil_mode", False)):
        raise BncError(f"{r.where}: layer '{site}' (MaxPool2d): ceil_mode and dilation are not"
                       " supported")  # fmt: skip
    return nn.MaxPool2d(k, s, p)


def _global(r: _Reader, node: torch.fx.Node, site: str, what: str, ok: bool) -> nn.Module:
    if not ok:
        raise BncError(f"{r.where}: layer '{site}' ({what}): only a global average pool (over"
                       " the whole map) can be quantized")  # fmt: skip
    return nn.AdaptiveAvgPool2d(1)


def _avg_pool(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    h, w = _shape(node.args[0])[2:]
    k = _pair(_arg(node, "kernel_size", None), 1)
    return _global(r, node, site, "AvgPool2d", k == (h, w) and _pair(
        _arg(node, "padding", 0), 0) == (0, 0))  # fmt: skip


def _adaptive(r: _Reader, node: torch.fx.Node, site: str) -> nn.Module:
    ok = _pair(_arg(node, "output_size", None), 1) == (1, 1)
    return _global(r, node, site, "AdaptiveAvgPool2d", ok)


LAYERS: dict[str, tuple[Callable[[_Reader, torch.fx.Node, str], nn.Module], type | None]] = {
    "conv2d": (_conv, nn.Conv2d),
    "convolution": (_conv, nn.Conv2d),
    "linear": (_linear, nn.Linear),
    "batch_norm": (_batch_norm, nn.BatchNorm2d),
    "_native_batch_norm_legit_no_training": (_batch_norm, nn.BatchNorm2d),
    "relu": (lambda r, n, s: nn.ReLU(), nn.ReLU),
    "relu_": (lambda r, n, s: nn.ReLU(), nn.ReLU),
    "max_pool2d": (_max_pool, nn.MaxPool2d),
    "max_pool2d_with_indices": (_max_pool, nn.MaxPool2d),
    "avg_pool2d": (_avg_pool, nn.AvgPool2d),
    "adaptive_avg_pool2d": (_adaptive, nn.AdaptiveAvgPool2d),
    "_adaptive_avg_pool2d": (_adaptive, nn.AdaptiveAvgPool2d),
}
"""ATen ops that are one layer → (the function building the float layer, the torch.nn class
whose module path names the step)."""


def program_to_float_graph(ep: torch.export.ExportedProgram, where: str) -> Graph:
    """The program as a ``Graph`` of float torch.nn layers (parameters copied)."""
    r = _Reader(ep, where)
    users = set(ep.graph_signature.user_inputs)
    inputs = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in users]
    if len(inputs) != 1:
        raise BncError(f"{where}: the model takes {len(inputs)} inputs; bnc quantizes one")
    env: dict[torch.fx.Node, str] = {inputs[0]: "input"}
    layers: dict[str, nn.Module] = {}
    steps: list[tuple[str, str, list[str]]] = []
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        aten = _aten(node)
        if not node.users and not isinstance(node.meta.get("val"), torch.Tensor):
            continue  # a shape check left by TorchScript (aten.dim): no value flows from it
        operands = [a for a in _tensor_args(node) if a in env]
        if aten in _PASS or aten == "getitem":
            if operands:
                env[node] = env[operands[0]]
            continue
        site = r.site(node)
        if aten in LAYERS:
            build, kind = LAYERS[aten]
            if not operands or operands[0] is not node.args[0]:
                raise BncError(f"{where}: layer '{site}' ({aten}) reads no tensor the model"
                               " computes from its input")  # fmt: skip
            name = r.name(node, kind)
            layers[name] = build(r, node, site)
            steps.append((name, "layer", [env[node.args[0]]]))
        elif aten == "add":
            if len(operands) != 2 or float(_arg(node, "alpha", 1)) != 1.0:
                raise BncError(f"{where}: layer '{site}' (add): only the sum of two tensors"
                               " (a residual add) can be quantized")  # fmt: skip
            name = r.name(node, None)
            steps.append((name, "add", [env[a] for a in operands]))
        elif aten in ("cat", "concat"):
            if int(_arg(node, "dim", 0)) % max(len(_shape(node)), 1) != 1:
                raise BncError(f"{where}: layer '{site}' (cat): only concatenation along"
                               " channels (dim=1)")  # fmt: skip
            name = r.name(node, None)
            steps.append((name, "cat", [env[a] for a in operands]))
        elif aten == "mean":  # a global average pool to (N, C): a pool, then a flatten
            _check_mean(where, site, node)
            pool = r.name(node, None)
            layers[pool] = nn.AdaptiveAvgPool2d(1)
            steps.append((pool, "layer", [env[node.args[0]]]))
            name = f"{pool}_flat"
            layers[name] = nn.Flatten()
            steps.append((name, "layer", [pool]))
        elif aten in ("flatten", "view", "reshape", "_unsafe_view"):
            src, out = _shape(node.args[0]), _shape(node)
            if not (len(out) == 2 and out[0] == src[0]):
                raise BncError(f"{where}: layer '{site}' ({aten}): only a reshape to (N, -1)"
                               f" can be quantized, not {src} to {out}")  # fmt: skip
            name = r.name(node, nn.Flatten)
            layers[name] = nn.Flatten()
            steps.append((name, "layer", [env[node.args[0]]]))
        else:
            raise BncError(f"{where}: layer '{site}' ({aten}) cannot be quantized by bnc;"
                           f" supported: {SUPPORTED}")  # fmt: skip
        env[node] = steps[-1][0]
    out = next(n for n in ep.graph.nodes if n.op == "output")
    results = _tensor_args(out)
    if len(results) != 1 or results[0] not in env or env[results[0]] == "input":
        raise BncError(f"{where}: the model must return one tensor computed from its input")
    last = env[results[0]]
    if steps[-1][0] != last:  # the output is an earlier step: end on it
        layers[f"{last}_out"] = nn.Identity()
        steps.append((f"{last}_out", "layer", [last]))
    return Graph(layers, steps).eval()


def _check_mean(where: str, site: str, node: torch.fx.Node) -> None:
    src = _shape(node.args[0])
    dims = sorted(int(d) % max(len(src), 1) for d in (_arg(node, "dim", []) or []))
    if len(src) != 4 or dims != [2, 3]:
        raise BncError(f"{where}: layer '{site}' (mean): only the mean over H and W of an"
                       " N,C,H,W tensor can be quantized")  # fmt: skip
    if bool(_arg(node, "keepdim", False)):
        raise BncError(f"{where}: layer '{site}' (mean): keepdim=True is not supported; use"
                       " nn.AdaptiveAvgPool2d(1)")  # fmt: skip


def float_graph(model: nn.Module | torch.export.ExportedProgram, shape: tuple[int, ...],
                where: str) -> Graph:  # fmt: skip
    """``model`` (a module, exported here at batch 1, or a program) as a float ``Graph``."""
    if isinstance(model, torch.export.ExportedProgram):
        return program_to_float_graph(model, where)
    try:
        ep = torch.export.export(model.eval(), (torch.zeros(1, *shape),))
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BncError(f"{where}: the model does not run on inputs of shape"
                       f" {','.join(map(str, shape))} ({first[:200]})") from None  # fmt: skip
    return program_to_float_graph(ep, where)
