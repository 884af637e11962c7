"""Analyses of a lowered graph. They return typed ``*Info`` results and never mutate.

* ``KernelInfo``: the sparsity of one binary layer, kernel by kernel (a kernel is ``b[o, c]``,
  the kh×kw taps one output channel reads from one input channel): zero kernels cost nothing,
  one-hot kernels are a shifted read, dense ones need AND-popcount (DESIGN §2.4).
* ``WidthInfo``: proven bounds of T, S and the threshold / output plane ``t*T + s*S + c``;
  ``check_widths`` refuses a graph whose plane could leave int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph, Node
from bnc.ir.types import TensorType


@dataclass(frozen=True, slots=True)
class KernelInfo:
    kernels: int
    zero: int
    one_hot: int
    dense: int
    beta_weights: int
    weights: int

    @property
    def beta_share(self) -> float:
        return self.beta_weights / self.weights

    @staticmethod
    def of(weight: np.ndarray) -> KernelInfo:
        o, c = weight.shape[:2]
        per_kernel = weight.reshape(o * c, -1).sum(axis=1)
        return KernelInfo(
            kernels=o * c,
            zero=int((per_kernel == 0).sum()),
            one_hot=int((per_kernel == 1).sum()),
            dense=int((per_kernel > 1).sum()),
            beta_weights=int(weight.sum()),
            weights=int(weight.size),
        )


@dataclass(frozen=True, slots=True)
class WidthInfo:
    """Bounds (absolute values) for one ``SumConv2d`` and the op that consumes its sums."""

    t_max: int
    s_max: int
    plane_max: int

    @property
    def plane_bits(self) -> int:
        """Bits of a signed integer that holds every value of the plane."""
        return self.plane_max.bit_length() + 1

    @property
    def sums_bits(self) -> int:
        return max(self.t_max, self.s_max).bit_length() + 1


PLANES = (O.Threshold, O.MultiThreshold, O.Requantize, O.OutputAffine)


class WidthError(ValueError):
    """A plane could overflow int64."""


def widths(graph: Graph, plane: Node) -> WidthInfo:
    """Bounds of one plane (``Threshold``, ``MultiThreshold``, ``Requantize``,
    ``OutputAffine``) over all its (T, S) operands, its largest constant included; T and S are
    those of its widest operand."""
    op = plane.op
    assert isinstance(op, PLANES)
    o = op.s.shape[1]
    if isinstance(op, O.OutputAffine):
        consts = [0] * o
    else:
        c = op.c.reshape(-1, o)
        consts = [max(abs(int(v)) for v in c[:, j]) for j in range(o)]
    bound = np.array(consts, dtype=object)
    t_all = s_all = 0
    for k, v in enumerate(plane.args):
        conv = graph.producer(v)
        assert conv is not None and isinstance(conv.op, O.SumConv2d)
        mag = graph.types[conv.args[0]].magnitude
        w = conv.op.weight
        taps = int(np.prod(w.shape[1:]))
        nnz = w.reshape(w.shape[0], -1).sum(axis=1)
        t_max = taps * mag
        t_all, s_all = max(t_all, t_max), max(s_all, int(nnz.max(initial=0)) * mag)
        for j in range(o):
            bound[j] += abs(int(op.t[k, j])) * t_max + abs(int(op.s[k, j])) * int(nnz[j]) * mag
    return WidthInfo(t_max=t_all, s_max=s_all, plane_max=int(bound.max(initial=0)))


def layer_widths(graph: Graph) -> dict[str, WidthInfo]:
    """``WidthInfo`` of every threshold / output plane by its name; raises ``WidthError`` past
    int64."""
    out: dict[str, WidthInfo] = {}
    for node in graph.nodes:
        if isinstance(node.op, PLANES):
            info = widths(graph, node)
            if info.plane_bits > 63:
                raise WidthError(
                    f"layer '{node.op.name}': its accumulator needs {info.plane_bits} bits, more"
                    " than int64 holds"
                )
            out[node.op.name] = info
    return out


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One row of ``bnc inspect``."""

    name: str
    op: str
    in_type: TensorType
    out_type: TensorType
    operand_bits: str
    kernels: KernelInfo | None
    macs: int
    weight_bytes: int
    acc_bits: int
    masks: int = 1  # binary masks of a multi-level layer (its kernels are theirs, together)


def is_identity(conv: O.SumConv2d) -> bool:
    """A 1x1, stride-1 layer whose kernels are the identity: the read of a residual shortcut
    (``S[o] = x[o]``) that ``FoldAdd`` makes, not a layer of the model."""
    w = conv.weight
    o, c, kh, kw = w.shape
    return (
        (kh, kw) == (1, 1)
        and o == c
        and conv.stride == (1, 1)
        and bool((w[:, :, 0, 0] == np.eye(o, dtype=bool)).all())
    )


def _layer_name(conv: O.SumConv2d) -> str:
    """A mask's layer: ``conv[m1]`` is a mask of ``conv`` (``DecomposeWeights``)."""
    name = conv.name
    return name[: name.rindex("[m")] if name.endswith("]") and "[m" in name else name


def layer_table(graph: Graph) -> list[LayerInfo]:
    """One row per layer: a binary layer (its ``SumConv2d`` masks together, with the plane that
    reads them; ``operand_bits`` is "activation bits x masks"), a pool, a concat, and the
    identity read of a residual shortcut (op ``Shortcut``: no weights, no MACs, so totals count
    only the model's own binary weights); reshapes are not rows."""
    rows: list[LayerInfo] = []
    plane = layer_widths(graph)
    masks: dict[tuple, list[np.ndarray]] = {}
    for node in graph.nodes:
        op = node.op
        if isinstance(op, O.SumConv2d) and not is_identity(op):
            reader = graph.users[node.out][0]
            key = (reader.out, node.args[0], op.weight.shape, op.stride, op.padding)
            masks.setdefault(key, []).append(op.weight)
    for node in graph.nodes:
        op = node.op
        if isinstance(op, (*PLANES, O.Flatten)):
            continue  # shown with their SumConv2d / as a reshape
        t_in = graph.types[node.args[0]]
        t_out = graph.types[node.out]
        kernels, macs, wbytes, acc = None, 0, 0, 0
        bits = "-"
        if isinstance(op, O.SumConv2d) and is_identity(op):
            reader = graph.users[node.out][0]
            rows.append(LayerInfo(op.name, "Shortcut", t_in, graph.types[reader.out], "-", None,
                                  0, 0, plane[reader.op.name].plane_bits))  # fmt: skip
            continue
        if isinstance(op, O.SumConv2d):
            reader = graph.users[node.out][0]
            key = (reader.out, node.args[0], op.weight.shape, op.stride, op.padding)
            group = masks.pop(key, None)
            if group is None:
                continue  # a later mask of a layer already shown
            t_out = graph.types[reader.out]
            kernels = KernelInfo.of(np.concatenate(group))
            _, oh, ow = t_out.shape
            macs = int(op.weight.size) * oh * ow
            wbytes = sum((int(w.size) + 7) // 8 for w in group)
            acc = plane[reader.op.name].plane_bits
            bits = f"{t_in.bits}x{len(group)}"
            name = _layer_name(op) if len(group) > 1 else op.name
            rows.append(LayerInfo(name, op.opname, t_in, t_out, bits, kernels, macs, wbytes, acc,
                                  len(group)))  # fmt: skip
            continue
        rows.append(LayerInfo(op.name, op.opname, t_in, t_out, bits, kernels, macs, wbytes, acc))
    return rows
