"""A QONNX file → the import-level IR graph.

QONNX is ONNX with quantizer nodes (``Quant``, ``BipolarQuant``, ``Trunc``) as Brevitas'
``export_qonnx`` writes it, and with FINN's ``MultiThreshold`` as FINN's conversion writes it.
The file is read with the ``onnx`` package (external data included) and followed node by node
in its (topological) order, with one table (``OPS``) from the op type to its handler.

Every ONNX tensor is one of:

* a **constant** (initializer, ``Constant``, or a node over constants, folded here);
* a **quantized weight**: ``Quant`` / ``BipolarQuant`` of a constant, kept as integer codes
  ``q`` with ``scale`` and ``zero_point`` (``w = scale * (q - zero_point)``), so a consumer
  (``Conv``, ``Gemm``, ``MatMul``) builds ``BinaryConv2d`` / ``QuantConv2d`` weights whose
  levels are those of the file exactly;
* an **activation** (``_Act``): an IR value, with a pending per-channel affine ``a*v + b``
  (elementwise ``Mul`` / ``Add`` / ``Sub`` / ``Div`` by constants and ``BatchNormalization``
  compose into it; it becomes one ``BatchNorm`` op where something else reads it), and for
  bits the magnitude a bit stands for (``BipolarQuant``'s scale).

The network input's affine (the ``2x - 1`` of FINN's models) is folded into the input's
quantizer: before ``BipolarQuant`` into ``Sign``'s float32 threshold, found exactly by a
bisection over float32 values (the reference's float32 ``a*x + b >= 0`` is monotone in x);
before ``Quant`` into the input quantizer's divisor and zero point, which needs ``b`` to be
a whole number of the quantizer's steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph, GraphError, Node
from bnc.ir.types import Kind, TensorType, real

QONNX_DOMAINS = {"qonnx.custom_op.general", "finn.custom_op.general", "finn", "qonnx"}
SUPPORTED = (
    "Quant, BipolarQuant, Trunc, MultiThreshold, Conv (group 1), Gemm, MatMul,"
    " BatchNormalization, MaxPool, Relu and Clip after a quantizer, Add/Sub/Mul/Div by"
    " constants, Add of two tensors, Concat (axis 1), GlobalAveragePool, AveragePool and"
    " ReduceMean over the whole map, Reshape/Flatten/Transpose/Squeeze/Unsqueeze where they"
    " are layout only, Identity, Dropout"
)


@dataclass
class _Weight:
    """``scale * (q - zero_point)`` with integer codes ``q`` (a quantized constant)."""

    q: np.ndarray  # int64
    scale: np.ndarray  # float64, broadcastable to q
    zero_point: np.ndarray  # float64, broadcastable to q
    node: str

    def dequantized(self) -> np.ndarray:
        return (self.q - self.zero_point) * self.scale


@dataclass
class _Act:
    """An activation: IR value ``value``; the ONNX tensor is ``a * value + b`` (per channel),
    a bit standing for ``±factor``. ``rank`` is the ONNX rank (4: N,C,H,W; 2: N,F)."""

    value: str
    rank: int
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    factor: float = 1.0
    pre: list[tuple[str, np.float32]] = field(default_factory=list)  # network input only


class _Importer:
    def __init__(self, model, where: str, shape: tuple[int, ...]) -> None:
        self.model = model
        self.where = where
        self.shape = shape
        dims = tuple(shape) + (1,) * (3 - len(shape))
        self.input_type = real(dims)  # type: ignore[arg-type]
        self.types: dict[str, TensorType] = {INPUT: self.input_type}
        self.nodes: list[Node] = []
        self.env: dict[str, np.ndarray | _Weight | _Act] = {}
        self.used_names: set[str] = set()

    # --- errors and small helpers -------------------------------------------------------

    def fail(self, node, why: str):
        raise BncError(f"{self.where}: node '{_label(node)}' ({node.op_type}): {why}")

    def name_of(self, node) -> str:
        base = _label(node)
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}#{i}"
        self.used_names.add(name)
        return name

    def emit(self, node, op: O.Op, args: tuple[str, ...]) -> str:
        try:
            op.check_arity(len(args))
            ty = op.infer(*(self.types[a] for a in args))
        except O.ShapeError as e:
            raise BncError(f"{self.where}: {e}") from None
        out = f"%{len(self.nodes)}"
        self.nodes.append(Node(op, args, out))
        self.types[out] = ty
        return out

    def const(self, node, i: int, what: str) -> np.ndarray:
        v = self.get(node, i)
        if not isinstance(v, np.ndarray):
            self.fail(node, f"its {what} (input {i}) must be a constant")
        return v

    def get(self, node, i: int):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return None
        if name not in self.env:
            self.fail(node, f"reads '{name}', which no node or initializer defines")
        return self.env[name]

    def act(self, node, i: int = 0) -> _Act:
        v = self.get(node, i)
        if isinstance(v, _Act):
            return v
        what = "a quantized weight" if isinstance(v, _Weight) else "a constant"
        self.fail(node, f"input {i} is {what}; bnc takes an activation computed from the input")

    def settle(self, node, x: _Act, *, bits_ok: bool = False) -> str:
        """The IR value of ``x`` with its pending affine applied (one ``BatchNorm``)."""
        if x.factor != 1.0 and not bits_ok:
            self.fail(node, f"reads bits that stand for ±{x.factor:g}; only ±1 is supported here")
        if x.value == INPUT and x.pre:
            self.fail(node, "the network input must go through a quantizer (Quant or"
                      " BipolarQuant) before any other operation")  # fmt: skip
        if x.a is None:
            return x.value
        t = self.types[x.value]
        if t.kind is not Kind.REAL:
            self.fail(node, f"an affine (Mul/Add) of quantized values ({t}) is only supported"
                      " where a quantizer or a linear layer follows")  # fmt: skip
        c = t.channels
        a, b = np.broadcast_to(x.a, (c,)).copy(), np.broadcast_to(x.b, (c,)).copy()
        bn = O.BatchNorm(self.name_of(node), a, b, np.zeros(c), np.ones(c), 0.0)
        x.value, x.a, x.b = self.emit(node, bn, (x.value,)), None, None
        return x.value

    def channel_vector(self, node, x: _Act, v: np.ndarray, what: str) -> np.ndarray:
        """A constant broadcast against activation ``x`` as one value per channel."""
        t = self.types[x.value]
        c = t.channels if x.rank != 2 else t.size
        v = np.asarray(v, dtype=np.float64)
        if v.size == 1:
            return np.full(c, float(v.reshape(-1)[0]))
        squeezed = v.reshape(-1)
        if x.rank == 4 and v.ndim in (3, 4) and v.shape[-2:] == (1, 1) and squeezed.size == c:
            return squeezed.copy()
        if x.rank == 4 and v.ndim == 1 and squeezed.size == c:
            self.fail(
                node,
                f"{what} of shape {v.shape} broadcasts over the width, not the"
                " channels; bnc takes per-tensor or per-channel (1,C,1,1) constants",
            )
        if x.rank == 2 and squeezed.size == c and v.shape[-1] == c:
            return squeezed.copy()
        self.fail(node, f"{what} of shape {tuple(v.shape)} is neither per tensor nor per channel"
                  f" of {c}")  # fmt: skip

    # --- the walk -----------------------------------------------------------------------

    def run(self) -> Graph:
        g = self.model.graph
        from onnx import numpy_helper

        for init in g.initializer:
            try:
                self.env[init.name] = numpy_helper.to_array(init)
            except Exception as e:  # noqa: BLE001 - onnx raises several kinds
                raise BncError(f"{self.where}: initializer '{init.name}' is unreadable"
                               f" ({_first(e)})") from None  # fmt: skip
        data = [i for i in g.input if i.name not in self.env]
        if len(data) != 1:
            names = ", ".join(i.name for i in data) or "none"
            raise BncError(f"{self.where}: the graph takes {len(data)} data inputs ({names});"
                           " bnc compiles models with one")  # fmt: skip
        self.env[data[0].name] = _Act(INPUT, len(self.shape) + 1)
        if len(g.output) != 1:
            raise BncError(f"{self.where}: the graph has {len(g.output)} outputs; bnc compiles"
                           " models with one")  # fmt: skip
        for node in g.node:
            ins = [self.env.get(n) for n in node.input if n]
            if (
                node.op_type not in _QUANT_OPS
                and node.op_type in _CONSTANT_FOLD
                and ins
                and all(isinstance(v, np.ndarray) for v in ins)
            ):
                self.fold_constant(node)
                continue
            handler = OPS.get(node.op_type)
            if node.domain not in ("", "ai.onnx", *QONNX_DOMAINS) or handler is None:
                domain = f" of domain '{node.domain}'" if node.domain else ""
                raise BncError(
                    f"{self.where}: node '{_label(node)}' is {node.op_type}{domain}, which bnc"
                    f" cannot compile; supported: {SUPPORTED}"
                )
            result = handler(self, node)
            if result is not None:
                self.env[node.output[0]] = result
        out = self.env.get(g.output[0].name)
        if not isinstance(out, _Act) or out.value == INPUT:
            raise BncError(f"{self.where}: the graph's output is not computed from its input")
        out_value = self.settle(_FakeNode(g.output[0].name, "output"), out)
        graph = Graph(self.input_type, tuple(self.nodes), out_value).pruned()
        try:
            graph.verify()
        except (O.ShapeError, GraphError) as e:
            raise BncError(f"{self.where}: {e}") from None
        return graph.canonical()

    def fold_constant(self, node) -> None:
        """A node whose inputs are all constants, evaluated here (shape arithmetic, weight
        transposes and the like)."""
        fn = _CONSTANT_FOLD.get(node.op_type)
        if fn is None:
            self.fail(node, "a node over constants that bnc cannot evaluate")
        vals = [self.env[n] if n else None for n in node.input]
        try:
            self.env[node.output[0]] = np.asarray(fn(node, *vals))
        except Exception as e:  # noqa: BLE001
            self.fail(node, f"cannot evaluate it on its constants ({_first(e)})")


@dataclass(frozen=True)
class _FakeNode:
    name: str
    op_type: str
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()


def _label(node) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _attrs(node) -> dict[str, object]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _scalar(imp: _Importer, node, i: int, what: str) -> float:
    v = imp.const(node, i, what)
    flat = np.asarray(v, dtype=np.float64).reshape(-1)
    if flat.size == 0 or not np.all(flat == flat[0]):
        imp.fail(node, f"its {what} must be one value per tensor for an activation, not"
                 f" shape {tuple(np.shape(v))}")  # fmt: skip
    return float(flat[0])


# --- quantizers --------------------------------------------------------------------------

_ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ROUND": np.round,
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)),
    "DOWN": np.fix,
    "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
}


def _int_range(signed: bool, narrow: bool, bits: int) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def _bit_width(imp: _Importer, node, i: int) -> int:
    bw = _scalar(imp, node, i, "bit width")
    if not (bw.is_integer() and 1 <= bw <= O.MAX_CODE_BITS):
        imp.fail(node, f"bit width {bw:g}: bnc takes integer widths 1 to {O.MAX_CODE_BITS}")
    return int(bw)


def _quant(imp: _Importer, node):
    at = _attrs(node)
    signed, narrow = bool(at.get("signed", 1)), bool(at.get("narrow", 0))
    mode = str(at.get("rounding_mode", "ROUND")).upper()
    if mode not in _ROUNDING:
        imp.fail(node, f"rounding_mode '{mode}' is not one of {', '.join(_ROUNDING)}")
    bits = _bit_width(imp, node, 3)
    x = imp.get(node, 0)
    if isinstance(x, np.ndarray):  # a weight: its integer codes, computed as qonnx does
        scale = imp.const(node, 1, "scale").astype(np.float32)
        zp = imp.const(node, 2, "zero point").astype(np.float32)
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            imp.fail(node, "the weight scale must be positive and finite")
        if not np.all(np.asarray(zp, dtype=np.float64) % 1 == 0):
            imp.fail(node, "the weight zero point must be an integer")
        u = x.astype(np.float32) / scale + zp
        if bits == 1 and signed:
            q = np.where(u >= 0, 1, -1)
        else:
            lo, hi = _int_range(signed, narrow, bits)
            q = _ROUNDING[mode](np.clip(u, lo, hi))
        return _Weight(q.astype(np.int64), scale.astype(np.float64), zp.astype(np.float64),
                       _label(node))  # fmt: skip
    xa = imp.act(node)
    scale = _scalar(imp, node, 1, "scale")
    zp = _scalar(imp, node, 2, "zero point")
    if not (math.isfinite(scale) and scale > 0):
        imp.fail(node, f"the scale must be positive and finite, not {scale!r}")
    if not zp.is_integer():
        imp.fail(node, f"the zero point must be an integer, not {zp!r}")
    if bits == 1 and signed:
        if zp != 0:
            imp.fail(node, "a 1-bit signed quantizer must have zero point 0")
        return _binarize(imp, node, xa, scale)
    if mode not in ("ROUND", "HALF_EVEN"):
        imp.fail(node, f"rounding_mode '{mode}' on activations: bnc rounds half to even"
                 " (ROUND, Brevitas' default)")  # fmt: skip
    lo, hi = _int_range(signed, narrow, bits)
    return _quantize(imp, node, xa, scale, int(zp), lo, hi)


def _bipolar(imp: _Importer, node):
    x = imp.get(node, 0)
    scale_v = imp.const(node, 1, "scale").astype(np.float32)
    if isinstance(x, np.ndarray):
        if not (np.isfinite(scale_v).all() and (scale_v > 0).all()):
            imp.fail(node, "the weight scale must be positive and finite")
        q = np.where(x.astype(np.float32) >= 0, 1, -1).astype(np.int64)
        return _Weight(q, scale_v.astype(np.float64), np.zeros(1), _label(node))
    scale = _scalar(imp, node, 1, "scale")
    if not (math.isfinite(scale) and scale > 0):
        imp.fail(node, f"the scale must be positive and finite, not {scale!r}")
    return _binarize(imp, node, imp.act(node), scale)


def _binarize(imp: _Importer, node, x: _Act, scale: float) -> _Act:
    name = imp.name_of(node)
    if x.value == INPUT:
        if x.a is not None and np.any(np.asarray(x.a) <= 0):
            imp.fail(node, "the input's affine before the binarizer must scale by a positive"
                     " factor")  # fmt: skip
        threshold = _input_threshold(x.pre)
        if threshold is None:
            imp.fail(node, "the input's affine before the binarizer makes it constant")
        value = _input_flatten(imp, node, x, imp.emit(node, O.Sign(name, threshold), (INPUT,)))
        return _Act(value, x.rank, factor=scale)
    t = imp.types[x.value]
    if x.a is not None and t.kind is not Kind.REAL:
        imp.fail(node, "an affine of quantized values before a binarizer")
    value = imp.settle(node, x, bits_ok=True)  # a BatchNorm: γ < 0 flips in the passes
    if t.kind is Kind.BIT:
        return _Act(value, x.rank, factor=scale)  # the sign of ±f is the bit itself
    return _Act(imp.emit(node, O.Sign(name), (value,)), x.rank, factor=scale)


def _quantize(imp: _Importer, node, x: _Act, scale: float, zp: int, lo: int, hi: int) -> _Act:
    name = imp.name_of(node)
    if x.value == INPUT:
        return _Act(_input_quantizer(imp, node, x, name, scale, zp, lo, hi), x.rank)
    t = imp.types[x.value]
    if t.kind is Kind.BIT:
        imp.fail(node, "a multi-bit quantizer of bits; quantize the real values before the"
                 " binarizer")  # fmt: skip
    if t.kind is Kind.INT and x.a is None:
        same = math.isclose(t.scale, scale, rel_tol=1e-12) and t.zero_point == zp
        if same and lo <= t.lo and t.hi <= hi:
            return x  # the codes are already on this grid
        value = _identity_read(imp, node, x.value)
    elif t.kind is Kind.INT:
        value = _identity_read(imp, node, x.value)
        value = imp.settle(node, _Act(value, x.rank, x.a, x.b))
    else:
        value = imp.settle(node, x)
    th = _grid_thresholds(imp, value, scale, zp, lo, hi)
    op = O.Quantize(name, scale, zp, lo, hi, th)
    return _Act(imp.emit(node, op, (value,)), x.rank)


MULTI_LEVELS = 15
"""Explicit thresholds for codes of at most 4 bits (the lowered multi-threshold's limit)."""

GRID_MAX = 1 << 16
"""At most this many distinct input values for a quantizer's rounding taken from the
reference's float32 arithmetic (``_grid_thresholds``)."""


def _grid(imp: _Importer, value: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Every value a real tensor can take, exactly (float64) and as the reference computes it
    (float32), where it is codes read as reals (a requantization) or a sum of two such."""

    def codes(v: str):
        t = imp.types[v]
        if t.kind is not Kind.INT:
            return None
        q = np.arange(t.lo, t.hi + 1, dtype=np.int64) - t.zero_point
        return t.scale * q.astype(np.float64), q.astype(np.float32) * np.float32(t.scale)

    p = next((n for n in imp.nodes if n.out == value), None)
    if p is None:
        return None
    if isinstance(p.op, O.QuantConv2d) and p.op.name.endswith("/read"):
        return codes(p.args[0])
    if isinstance(p.op, O.Add):
        a, b = (codes(v) for v in p.args)
        if a is None or b is None or a[0].size * b[0].size > GRID_MAX:
            return None
        exact = (a[0][:, None] + b[0][None, :]).reshape(-1)
        ref = (a[1][:, None] + b[1][None, :]).astype(np.float32).reshape(-1)
        return exact, ref
    return None


def _grid_thresholds(imp: _Importer, value: str, scale, zp, lo, hi) -> np.ndarray | None:
    """Where a quantizer's input takes few values (``_grid``), the thresholds that give the
    reference's own codes on every one of them: its float32 ``x / scale`` can put a value on
    a rounding tie that exact arithmetic puts just below (a residual add of codes whose scale
    ratio is 3/2, say), and then half of all such values would round the other way."""

    def quant(ref: np.ndarray) -> np.ndarray:
        u = (ref / np.float32(scale)).astype(np.float32) + np.float32(zp)
        return np.rint(np.clip(u.astype(np.float32), lo, hi)).astype(np.int64)

    grid = _grid(imp, value)
    if grid is None or hi - lo > MULTI_LEVELS:
        return None
    return _step_thresholds(grid[0], quant(grid[1]), lo, hi)


def _step_thresholds(exact: np.ndarray, code: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """Thresholds ``t`` (``hi - lo`` of them) with ``lo + #{x >= t} = code`` on every value
    ``exact`` of the grid, midway between grid values; None where ``code`` is not a
    non-decreasing function of ``exact``."""
    order = np.argsort(exact, kind="stable")
    xs, cs = exact[order], code[order]
    if (np.diff(cs) < 0).any():
        return None  # not monotone in the exact value: keep the quantizer's own rounding
    distinct = np.unique(xs)
    if distinct.size != np.unique(np.stack([xs, cs], 1), axis=0).shape[0]:
        return None  # one exact value with two codes
    gap = np.min(np.diff(distinct)) if distinct.size > 1 else 1.0
    out = np.empty(hi - lo)
    for level in range(1, hi - lo + 1):
        above = np.nonzero(cs >= lo + level)[0]
        if above.size == 0:
            out[level - 1] = xs[-1] + gap  # never reached
        elif above[0] == 0:
            out[level - 1] = xs[0] - gap  # always reached
        else:
            out[level - 1] = (xs[above[0] - 1] + xs[above[0]]) / 2
    return out


def _identity_read(imp: _Importer, node, value: str) -> str:
    """Codes read as their real values: a 1x1 convolution with the identity as weights, so
    that a requantization or an affine of codes becomes an ordinary quantizer fold."""
    t = imp.types[value]
    c = t.channels
    index = np.eye(c, dtype=np.int64)[:, :, None, None]
    levels = np.tile(np.array([0.0, 1.0]), (c, 1))
    op = O.QuantConv2d(imp.name_of(node) + "/read", index, levels, np.zeros(c))
    return imp.emit(node, op, (value,))


def _input_quantizer(imp, node, x: _Act, name: str, scale, zp, lo, hi) -> str:
    """``Quant(a*x + b)`` on the network input: the input quantizer's own float32
    ``x * mul + add``, as the file computes it where it is a Mul then an Add/Sub (a Div by a
    power of two is that Mul); any other per-tensor chain is composed into one ``a, b``."""
    mul, add, exact = 1.0, 0.0, True
    for k, (op, c) in enumerate(x.pre):
        c = float(c)
        if op == "Div" and math.frexp(c)[0] in (0.5, -0.5):
            op, c = "Mul", 1.0 / c
        if op == "Mul" and k == 0:
            mul = c
        elif op in ("Add", "Sub") and add == 0.0:
            add = c if op == "Add" else -c
        else:
            exact = False
    if not exact:
        mul = float(np.asarray(x.a).reshape(-1)[0])
        add = float(np.asarray(x.b).reshape(-1)[0])
    if not mul > 0:
        imp.fail(node, "the input's affine before its quantizer must scale by a positive factor")
    op = O.QuantizeInput(name, scale, lo, hi, zero_point=zp, mul=mul, add=add)
    return _input_flatten(imp, node, x, imp.emit(node, op, (INPUT,)))


def _input_flatten(imp: _Importer, node, x: _Act, value: str) -> str:
    """The quantized input, flattened where the file reshapes the input to (N, -1) first."""
    if x.rank == 2 and len(imp.shape) == 3:
        return imp.emit(node, O.Flatten(imp.name_of(node) + "/flat"), (value,))
    return value


def _input_threshold(pre: list[tuple[str, np.float32]]) -> float | None:
    """The least float32 x with ``f(x) >= 0``, f the input's float32 affine in file order
    (monotone increasing); None if there is none or every x passes."""

    def f(x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float32)
        for op, c in pre:
            v = {
                "Mul": lambda v, c=c: v * c,
                "Div": lambda v, c=c: v / c,
                "Add": lambda v, c=c: v + c,
                "Sub": lambda v, c=c: v - c,
                "RSub": lambda v, c=c: c - v,
            }[op](v).astype(np.float32)
        return v >= 0

    if not pre:
        return 0.0
    # float32 values in order ↔ their ordered integer keys
    lo_key, hi_key = _key(np.float32(-np.inf)), _key(np.float32(np.inf))
    if not f(np.array([np.inf], np.float32))[0]:
        return None
    if f(np.array([-np.inf], np.float32))[0]:
        return None
    while hi_key - lo_key > 1:  # f(lo) false, f(hi) true
        mid = (lo_key + hi_key) // 2
        if f(np.array([_unkey(mid)], np.float32))[0]:
            hi_key = mid
        else:
            lo_key = mid
    t = _unkey(hi_key)
    return float(t) + 0.0  # -0.0 as 0.0


def _key(x: np.float32) -> int:
    i = int(np.array([x], np.float32).view(np.int32)[0])
    return i if i >= 0 else -(i & 0x7FFFFFFF)


def _unkey(k: int) -> np.float32:
    i = k if k >= 0 else (-k) | -0x80000000
    return np.array([i], np.int32).view(np.float32)[0]


_QUANT_OPS = {"Quant", "BipolarQuant", "IntQuant"}


# --- linear layers -----------------------------------------------------------------------


def _weight_levels(imp: _Importer, node, w: _Weight | np.ndarray, o_axis: int):
    """Per output channel levels of a quantized weight: ``(index, levels)`` or the two-level
    ``(bits, alpha, beta)`` form for ±s weights."""
    if isinstance(w, np.ndarray):
        imp.fail(node, "its weight is a float constant; bnc needs quantized weights (a Quant or"
                 " BipolarQuant node on the weight)")  # fmt: skip
    shape = w.q.shape
    scale = np.broadcast_to(w.scale, shape)
    zp = np.broadcast_to(w.zero_point, shape)
    q = np.moveaxis(w.q - zp, o_axis, 0).reshape(shape[o_axis], -1)
    s = np.moveaxis(scale, o_axis, 0).reshape(shape[o_axis], -1)
    if not np.all(s == s[:, :1]):
        imp.fail(node, "its weight scale varies within an output channel; bnc takes per-tensor"
                 " or per-output-channel scales")  # fmt: skip
    per = s[:, 0]
    vals = np.unique(q)
    index = np.searchsorted(vals, q).astype(np.int64)
    levels = per[:, None] * vals[None, :].astype(np.float64)
    return q, index, levels, per


def _conv(imp: _Importer, node):
    at = _attrs(node)
    x = imp.act(node)
    if x.rank != 4:
        imp.fail(node, "takes an N,C,H,W activation")
    if int(at.get("group", 1)) != 1:
        imp.fail(node, f"group {at['group']}: bnc supports group 1")
    if any(int(d) != 1 for d in at.get("dilations", [1, 1])):
        imp.fail(node, "dilations other than 1 are not supported")
    auto = str(at.get("auto_pad", "NOTSET"))
    if auto not in ("NOTSET", "VALID"):
        imp.fail(node, f"auto_pad {auto}: give explicit pads")
    pads = [int(p) for p in at.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        imp.fail(node, f"pads {pads}: bnc takes symmetric padding (top = bottom, left = right)")
    strides = tuple(int(s) for s in at.get("strides", [1, 1]))
    w = imp.get(node, 1)
    bias = _bias(imp, node, 2)
    return _linear_layer(imp, node, x, w, bias, 0, conv=(strides, (pads[0], pads[1])))


def _bias(imp: _Importer, node, i: int) -> np.ndarray | None:
    v = imp.get(node, i)
    if v is None:
        return None
    if isinstance(v, _Weight):
        return v.dequantized().astype(np.float64).reshape(-1)
    if not isinstance(v, np.ndarray):
        imp.fail(node, f"its bias (input {i}) must be a constant")
    return np.asarray(v, dtype=np.float64).reshape(-1)


def _gemm(imp: _Importer, node):
    at = _attrs(node)
    if int(at.get("transA", 0)):
        imp.fail(node, "transA=1 is not supported")
    x = imp.act(node)
    w = imp.get(node, 1)
    o_axis = 0 if int(at.get("transB", 0)) else 1
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    if isinstance(w, _Weight) and alpha != 1.0:
        w = _Weight(w.q, w.scale * alpha, w.zero_point, w.node)
    bias = _bias(imp, node, 2)
    if bias is not None:
        bias = bias * beta
    return _linear_layer(imp, node, x, w, bias, o_axis)


def _matmul(imp: _Importer, node):
    x = imp.act(node)
    return _linear_layer(imp, node, x, imp.get(node, 1), None, 1)


def _linear_layer(imp: _Importer, node, x: _Act, w, bias, o_axis: int, conv=None) -> _Act:
    if isinstance(w, _Act):
        imp.fail(node, "its weight is computed from the input; bnc takes constant weights")
    if w is None:
        imp.fail(node, "has no weight")
    q, index, levels, per = _weight_levels(imp, node, w, o_axis)
    o = levels.shape[0]
    src = imp.settle(node, x, bits_ok=True)
    f = x.factor
    t = imp.types[src]
    if t.kind is Kind.REAL:
        imp.fail(node, "reads real (unquantized) values; put a Quant or BipolarQuant before it")
    if conv is None and x.rank == 4 and t.shape[1:] != (1, 1):
        imp.fail(node, f"reads an N,C,H,W tensor {t}; flatten it first")
    bias = np.zeros(o) if bias is None else bias
    if bias.shape != (o,):
        imp.fail(node, f"its bias has {bias.size} values for {o} outputs")
    name = imp.name_of(node)
    wshape = np.moveaxis(w.q, o_axis, 0).shape
    two = np.array_equal(np.unique(q), [-1, 1])
    if two:  # ±s: the v1 binary form, b = 1[w > 0]
        bits = (q > 0).reshape(wshape)
        alpha, beta = -per * f, per * f
        if conv is None:
            op = O.BinaryLinear(name, bits.reshape(o, -1), alpha, beta, bias)
        else:
            op = O.BinaryConv2d(name, bits, alpha, beta, bias, *conv)
    else:
        idx = index.reshape(wshape)
        if conv is None:
            op = O.QuantLinear(name, idx.reshape(o, -1), levels * f, bias)
        else:
            op = O.QuantConv2d(name, idx, levels * f, bias, *conv)
    return _Act(imp.emit(node, op, (src,)), 4 if conv is not None else 2)


# --- elementwise -------------------------------------------------------------------------


def _affine_op(imp: _Importer, node):
    kind = node.op_type
    a_in, b_in = imp.get(node, 0), imp.get(node, 1)
    if isinstance(a_in, _Act) and isinstance(b_in, _Act):
        if kind != "Add":
            imp.fail(node, f"{kind} of two tensors; bnc takes Add (a residual add)")
        return _residual_add(imp, node, a_in, b_in)
    if isinstance(a_in, _Act):
        x, c, first = a_in, b_in, True
    elif isinstance(b_in, _Act):
        x, c, first = b_in, a_in, False
    else:
        imp.fail(node, "reads a quantized weight outside a linear layer")
    if isinstance(c, _Weight):
        c = c.dequantized()
    op = kind if first or kind in ("Add", "Mul") else {"Sub": "RSub", "Div": "RDiv"}[kind]
    if op == "RDiv":
        imp.fail(node, "a constant divided by an activation is not supported")
    cv = np.asarray(c)
    if x.value == INPUT:
        if cv.size != 1:
            imp.fail(node, "a per-channel affine of the input; bnc takes per-tensor constants"
                     " before the input quantizer")  # fmt: skip
        pre = [*x.pre, (op, np.float32(cv.reshape(-1)[0]))]
    else:
        pre = []
    vec = imp.channel_vector(node, x, cv, "the constant") if x.value != INPUT else (
        np.asarray([float(cv.reshape(-1)[0])]))  # fmt: skip
    a = np.ones_like(vec) if x.a is None else np.asarray(x.a, dtype=np.float64)
    b = np.zeros_like(vec) if x.b is None else np.asarray(x.b, dtype=np.float64)
    if op == "Mul":
        a, b = a * vec, b * vec
    elif op == "Div":
        if np.any(vec == 0):
            imp.fail(node, "divides by zero")
        a, b = a / vec, b / vec
    elif op == "Add":
        b = b + vec
    elif op == "Sub":
        b = b - vec
    else:  # RSub: c - x
        a, b = -a, vec - b
    if x.factor != 1.0 or (x.value != INPUT and imp.types[x.value].kind is Kind.BIT):
        value = x.value
        if op in ("Mul", "Div") and x.b is None and np.all(a > 0) and np.ptp(a) == 0:
            return _Act(value, x.rank, factor=x.factor * float(a[0]))
        imp.fail(node, "an affine of bits; bnc takes a positive per-tensor Mul of bits")
    return _Act(x.value, x.rank, a, b, pre=pre)


def _residual_add(imp: _Importer, node, x: _Act, y: _Act) -> _Act:
    vx, vy = imp.settle(node, x), imp.settle(node, y)
    if x.rank != y.rank:
        imp.fail(node, "adds tensors of different ranks")
    return _Act(imp.emit(node, O.Add(imp.name_of(node)), (vx, vy)), x.rank)


def _batch_norm(imp: _Importer, node):
    x = imp.act(node)
    at = _attrs(node)
    eps = float(at.get("epsilon", 1e-5))
    c = imp.types[x.value].channels
    gamma, beta, mean, var = (
        np.asarray(imp.const(node, i, w), dtype=np.float64).reshape(-1)
        for i, w in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var"))
    )
    if any(v.shape != (c,) for v in (gamma, beta, mean, var)):
        imp.fail(node, f"its parameters must have {c} values, one per channel")
    if np.any(var + eps <= 0):
        imp.fail(node, "var + epsilon must be positive")
    k = gamma / np.sqrt(var + eps)
    a = np.ones_like(k) if x.a is None else x.a
    b = np.zeros_like(k) if x.b is None else x.b
    if x.value == INPUT:
        imp.fail(node, "a BatchNormalization of the input before its quantizer")
    if imp.types[x.value].kind is not Kind.REAL:
        imp.fail(node, "a BatchNormalization of quantized values; bnc takes it after a linear"
                 " layer")  # fmt: skip
    return _Act(x.value, x.rank, a * k, (b - mean) * k + beta)


def _relu(imp: _Importer, node):
    x = imp.act(node)
    return _clip_like(imp, node, x, 0.0, math.inf)


def _clip(imp: _Importer, node):
    x = imp.act(node)
    at = _attrs(node)
    lo = imp.get(node, 1)
    hi = imp.get(node, 2)
    lo_v = (
        float(np.asarray(lo).reshape(-1)[0]) if lo is not None else float(at.get("min", -math.inf))
    )
    hi_v = (
        float(np.asarray(hi).reshape(-1)[0]) if hi is not None else float(at.get("max", math.inf))
    )
    return _clip_like(imp, node, x, lo_v, hi_v)


def _clip_like(imp: _Importer, node, x: _Act, lo: float, hi: float) -> _Act:
    """``Relu`` / ``Clip``: after a quantizer where it cuts no code (identity), or before
    a quantizer that maps everything below ``lo`` (and above ``hi``) as it maps the bound
    (checked where that quantizer is read: ``_Clip``)."""
    t = imp.types[x.value] if x.value != INPUT else None
    if t is not None and t.kind is Kind.INT and x.a is None:
        vlo, vhi = (t.scale * v for v in t.value_range)
        if vlo >= lo and vhi <= hi:
            return x
        imp.fail(node, f"cuts the codes of {t}; bnc takes Relu/Clip that cut no code, or"
                 " before a quantizer that clamps there itself")  # fmt: skip
    users = [n for n in imp.model.graph.node if node.output[0] in n.input]
    if (
        len(users) == 1
        and users[0].op_type in ("Quant", "IntQuant")
        and users[0].input[0] == node.output[0]
    ):
        q = users[0]
        at = _attrs(q)
        signed, narrow = bool(at.get("signed", 1)), bool(at.get("narrow", 0))
        scale = _scalar(imp, q, 1, "scale")
        zp = _scalar(imp, q, 2, "zero point")
        bits = _bit_width(imp, q, 3)
        qlo, qhi = _int_range(signed, narrow, bits)
        # the quantizer maps everything below lo (above hi) as it maps lo (hi) itself
        below = lo == -math.inf or np.rint(lo / scale) + zp <= qlo
        above = hi == math.inf or np.rint(hi / scale) + zp >= qhi
        if below and above:
            return x
    imp.fail(node, f"{node.op_type} is supported right before a quantizer whose range it does"
             " not cut, or after one on codes it leaves alone")  # fmt: skip


# --- pools and layout --------------------------------------------------------------------


def _max_pool(imp: _Importer, node):
    x = imp.act(node)
    at = _attrs(node)
    if int(at.get("ceil_mode", 0)) or any(int(d) != 1 for d in at.get("dilations", [1, 1])):
        imp.fail(node, "ceil_mode and dilations are not supported")
    if str(at.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        imp.fail(node, "auto_pad: give explicit pads")
    k = tuple(int(v) for v in at["kernel_shape"])
    s = tuple(int(v) for v in at.get("strides", k))
    pads = [int(p) for p in at.get("pads", [0, 0, 0, 0])]
    if pads[0] != pads[2] or pads[1] != pads[3]:
        imp.fail(node, f"pads {pads}: bnc takes symmetric padding")
    op = O.MaxPool2d(imp.name_of(node), k, s, (pads[0], pads[1]))  # type: ignore[arg-type]
    return _Act(imp.emit(node, op, (imp.settle(node, x, bits_ok=True),)), 4, factor=x.factor)


def _global_pool(imp: _Importer, node):
    x = imp.act(node)
    if x.rank != 4:
        imp.fail(node, "takes an N,C,H,W tensor")
    t = imp.types[x.value]
    if node.op_type == "AveragePool":
        at = _attrs(node)
        k = tuple(int(v) for v in at["kernel_shape"])
        pads = [int(p) for p in at.get("pads", [0, 0, 0, 0])]
        if k != t.shape[1:] or any(pads):
            imp.fail(
                node,
                f"kernel {k} with pads {pads}: only a pool over the whole"
                f" {t.shape[1]}x{t.shape[2]} map (a global average pool) is supported",
            )
    elif node.op_type == "ReduceMean":
        at = _attrs(node)
        axes = at.get("axes")
        if axes is None and len(node.input) > 1:
            axes = imp.const(node, 1, "axes").tolist()
        if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
            imp.fail(node, f"axes {axes}: only the mean over height and width is supported")
        if not int(at.get("keepdims", 1)):
            value = _pool_value(imp, node, x)
            return _Act(imp.emit(node, O.Flatten(imp.name_of(node) + "/flat"), (value,)), 2)
    return _Act(_pool_value(imp, node, x), 4)


def _pool_value(imp: _Importer, node, x: _Act) -> str:
    src = imp.settle(node, x)
    return imp.emit(node, O.GlobalAvgPool(imp.name_of(node)), (src,))


def _reshape(imp: _Importer, node):
    x = imp.act(node)
    t = imp.types[x.value]
    if node.op_type == "Flatten":
        axis = int(_attrs(node).get("axis", 1))
        if axis != 1:
            imp.fail(node, f"axis {axis}: only Flatten(axis=1) is supported")
        target = (-1, t.size)
    elif node.op_type == "Reshape":
        target = tuple(int(v) for v in imp.const(node, 1, "shape").reshape(-1))
    else:  # Squeeze / Unsqueeze to the same data
        target = None
    if target is not None:
        if len(target) == 2 and target[1] in (-1, t.size):
            return _flatten(imp, node, x)
        if len(target) == 4 and tuple(target[1:]) == t.shape:
            return _Act(x.value, 4, x.a, x.b, x.factor, x.pre)
        if len(target) == 4 and x.rank == 2 and tuple(target[1:]) == (t.size, 1, 1):
            return _Act(x.value, 4, x.a, x.b, x.factor, x.pre)
        imp.fail(node, f"a reshape of {t} to {target}; bnc takes reshapes to (N, -1)")
    out_rank = 2 if t.shape[1:] == (1, 1) and node.op_type == "Squeeze" else 4
    if t.shape[1:] != (1, 1):
        imp.fail(node, f"{node.op_type} of {t}: only of N,C,1,1 tensors")
    return _Act(x.value, out_rank, x.a, x.b, x.factor, x.pre)


def _flatten(imp: _Importer, node, x: _Act) -> _Act:
    if x.value == INPUT:  # flattened before it is quantized: the quantizer flattens after
        return _Act(INPUT, 2, x.a, x.b, x.factor, x.pre)
    t = imp.types[x.value]
    if t.shape[1:] == (1, 1) and x.rank == 2:
        return x
    per_tensor = x.a is not None and np.ptp(x.a) == 0 and np.ptp(x.b) == 0
    if per_tensor:  # a per-tensor affine survives the flatten
        a, b = np.asarray(x.a).reshape(-1)[:1], np.asarray(x.b).reshape(-1)[:1]
        return _Act(imp.emit(node, O.Flatten(imp.name_of(node)), (x.value,)), 2, a, b)
    value = imp.settle(node, x, bits_ok=True)
    return _Act(imp.emit(node, O.Flatten(imp.name_of(node)), (value,)), 2, factor=x.factor)


def _transpose(imp: _Importer, node):
    w = imp.get(node, 0)
    if isinstance(w, _Weight):  # a quantized weight transposed for MatMul
        perm = _attrs(node).get("perm") or None
        full = [np.broadcast_to(v, w.q.shape) for v in (w.q, w.scale, w.zero_point)]
        q, scale, zp = (np.transpose(v, perm) for v in full)
        return _Weight(q, scale, zp, w.node)
    x = imp.act(node)
    t = imp.types[x.value]
    perm = [int(p) for p in _attrs(node).get("perm", [])]
    dims = (1, *t.shape) if x.rank == 4 else (1, t.size)
    moved = [dims[p] for p in perm] if perm else list(reversed(dims))
    kept = [p for p in (perm or range(len(dims))[::-1]) if dims[p] != 1]
    if kept != sorted(kept):
        imp.fail(node, f"perm {perm} moves data (NHWC layouts from FINN's later steps are not"
                 " supported; export the model from Brevitas in NCHW)")  # fmt: skip
    if len(moved) == 4 and moved[2:] == [1, 1] or len(moved) == 2:
        return _Act(x.value, len(moved), x.a, x.b, x.factor, x.pre)
    imp.fail(node, f"perm {perm} of {t} changes the layout bnc reads")


def _concat(imp: _Importer, node):
    axis = int(_attrs(node).get("axis", 1))
    xs = [imp.act(node, i) for i in range(len(node.input))]
    if axis != 1 or any(x.rank != 4 for x in xs):
        imp.fail(node, f"axis {axis}: only concatenation of N,C,H,W tensors along channels")
    values = tuple(imp.settle(node, x) for x in xs)
    return _Act(imp.emit(node, O.Concat(imp.name_of(node)), values), 4)


def _identity(imp: _Importer, node):
    return imp.act(node)


def _trunc(imp: _Importer, node):
    """QONNX ``Trunc`` (Brevitas' ``TruncAvgPool2d`` after an average pool of codes): an
    elementwise function of codes, so a quantizer with the thresholds that give the
    reference's own result on every code (``_step_thresholds``), up to 4-bit outputs."""
    x = imp.act(node)
    t = imp.types[x.value]
    if t.kind is not Kind.INT or x.a is not None:
        imp.fail(node, "Trunc of real values; bnc takes Trunc of codes (after a quantizer and"
                 " an average pool)")  # fmt: skip
    at = _attrs(node)
    mode = str(at.get("rounding_mode", "FLOOR")).upper()
    if mode not in _ROUNDING:
        imp.fail(node, f"rounding_mode '{mode}' is not one of {', '.join(_ROUNDING)}")
    scale = _scalar(imp, node, 1, "scale")
    zp = _scalar(imp, node, 2, "zero point")
    in_bits = _scalar(imp, node, 3, "input bit width")
    if len(node.input) >= 6:  # v2: output scale and bit width
        out_scale = _scalar(imp, node, 4, "output scale")
        out_bits = _bit_width(imp, node, 5)
        signed, narrow = bool(at.get("signed", 1)), bool(at.get("narrow", 0))
        shift = 2.0 ** np.round(np.log2(out_scale / scale))
    else:  # v1: output bit width only, unsigned
        out_bits = _bit_width(imp, node, 4)
        signed, narrow = False, False
        shift = 2.0 ** (in_bits - out_bits)
        out_scale = scale * shift
    lo, hi = _int_range(signed, narrow, out_bits)
    out_zp = zp / shift
    if not (math.isfinite(out_scale) and out_scale > 0 and float(out_zp).is_integer()):
        imp.fail(node, "its output scale must be positive and its zero point whole")
    if hi - lo > MULTI_LEVELS:
        imp.fail(node, f"{out_bits}-bit output; bnc takes Trunc to at most 4 bits")
    q = np.arange(t.lo, t.hi + 1, dtype=np.int64) - t.zero_point
    exact = t.scale * q.astype(np.float64)
    ref = q.astype(np.float32) * np.float32(t.scale)
    y = np.round((ref / np.float32(scale)).astype(np.float32) + np.float32(zp))
    y = np.clip((y / np.float32(shift)).astype(np.float32), lo, hi)
    code = _ROUNDING[mode](y).astype(np.int64)
    th = _step_thresholds(exact, code, lo, hi)
    if th is None:
        imp.fail(node, "its result does not grow with its input")
    value = _identity_read(imp, node, x.value)
    op = O.Quantize(imp.name_of(node), float(out_scale), int(out_zp), lo, hi, th)
    return _Act(imp.emit(node, op, (value,)), x.rank)


def _multithreshold(imp: _Importer, node):
    """FINN's ``MultiThreshold``: ``out_scale * #{l : x >= t[c, l]} + out_bias``. Bipolar
    outputs (one threshold, ``2a - 1``) are a ``Sign`` of ``x - t``; others are codes
    ``q = count`` with ``zero_point = -out_bias / out_scale``."""
    at = _attrs(node)
    layout = str(at.get("data_layout", "NCHW"))
    if layout not in ("NCHW", "NC"):
        imp.fail(node, f"data_layout {layout}: bnc reads NCHW graphs (FINN's NHWC steps come"
                 " later; export the model before them)")  # fmt: skip
    x = imp.act(node)
    th = np.asarray(imp.const(node, 1, "thresholds"), dtype=np.float64)
    t = imp.types[x.value]
    c = t.channels if x.rank == 4 else t.size
    if th.ndim != 2 or th.shape[0] not in (1, c) or th.shape[1] < 1:
        imp.fail(node, f"thresholds of shape {th.shape}: expected ({c}, B) or (1, B)")
    if np.isnan(th).any() or (np.diff(th, axis=1) < 0).any():
        imp.fail(node, "thresholds must be sorted (non-decreasing) per channel")
    scale, bias = float(at.get("out_scale", 1.0)), float(at.get("out_bias", 0.0))
    dtype = str(at.get("out_dtype", ""))
    levels = th.shape[1]
    if not (math.isfinite(scale) and scale > 0):
        imp.fail(node, f"out_scale {scale!r}: bnc takes a positive scale")
    if t.kind is Kind.INT:
        x = _Act(_identity_read(imp, node, imp.settle(node, x)), x.rank)
    value = imp.settle(node, x)
    th = np.broadcast_to(th, (c, levels)).copy()
    if dtype == "BIPOLAR" or (levels == 1 and math.isclose(bias, -scale / 2)):
        # out = scale * a + bias = (scale/2) * (2a - 1) with bias = -scale/2
        if not math.isclose(bias, -scale / 2, rel_tol=1e-9):
            imp.fail(node, "a bipolar output needs out_bias = -out_scale/2")
        bn = O.BatchNorm(imp.name_of(node) + "/t", np.ones(c), -th[:, 0], np.zeros(c),
                         np.ones(c), 0.0)  # fmt: skip
        shifted = imp.emit(node, bn, (value,))
        return _Act(imp.emit(node, O.Sign(imp.name_of(node)), (shifted,)), x.rank,
                    factor=scale / 2)  # fmt: skip
    zp = -bias / scale
    if not math.isclose(zp, round(zp), abs_tol=1e-9):
        imp.fail(node, f"out_bias {bias:g} is not a whole number of out_scale {scale:g}")
    if levels > MULTI_LEVELS:
        imp.fail(node, f"{levels} thresholds per channel; bnc takes at most {MULTI_LEVELS}"
                 " (4-bit codes)")  # fmt: skip
    op = O.Quantize(imp.name_of(node), scale, int(round(zp)), 0, levels, th)
    return _Act(imp.emit(node, op, (value,)), x.rank)


OPS: dict[str, Callable[[_Importer, object], object]] = {
    "Quant": _quant,
    "IntQuant": _quant,
    "BipolarQuant": _bipolar,
    "Trunc": _trunc,
    "MultiThreshold": _multithreshold,
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batch_norm,
    "Add": _affine_op,
    "Sub": _affine_op,
    "Mul": _affine_op,
    "Div": _affine_op,
    "Relu": _relu,
    "Clip": _clip,
    "MaxPool": _max_pool,
    "GlobalAveragePool": _global_pool,
    "AveragePool": _global_pool,
    "ReduceMean": _global_pool,
    "Reshape": _reshape,
    "Flatten": _reshape,
    "Squeeze": _reshape,
    "Unsqueeze": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "Identity": _identity,
    "Dropout": _identity,
}
"""ONNX op type → its handler; each returns what its output is (or fails with one line)."""


def _attr_list(node, name, default):
    return _attrs(node).get(name, default)


_CONSTANT_FOLD: dict[str, Callable[..., np.ndarray]] = {
    "Identity": lambda n, x: x,
    "Transpose": lambda n, x: np.transpose(x, _attr_list(n, "perm", None) or None),
    "Reshape": lambda n, x, s: x.reshape(
        tuple(int(d) if d != 0 else x.shape[i] for i, d in enumerate(s.reshape(-1)))
    ),  # fmt: skip
    "Mul": lambda n, a, b: a * b,
    "Div": lambda n, a, b: a / b,
    "Add": lambda n, a, b: a + b,
    "Sub": lambda n, a, b: a - b,
    "Neg": lambda n, a: -a,
    "Sqrt": lambda n, a: np.sqrt(a),
    "Pow": lambda n, a, b: np.power(a, b).astype(a.dtype),
    "Cast": lambda n, a: a,
    "Squeeze": lambda n, a, axes=None: (
        np.squeeze(a, tuple(axes.tolist())) if axes is not None else np.squeeze(a)
    ),  # fmt: skip
    "Unsqueeze": lambda n, a, axes: np.expand_dims(a, tuple(axes.tolist())),
}


def _constant_node(imp: _Importer, node):
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(a.f if a.name == "value_float" else a.i)
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(list(a.floats) if a.name == "value_floats" else list(a.ints))
    imp.fail(node, "a Constant without a value")


OPS["Constant"] = _constant_node


def input_dims(model, where: str, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The data input's C,H,W (or features) from the file, ``--input-shape`` where it is
    dynamic; the batch dimension may be anything."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    data = [i for i in g.input if i.name not in inits]
    if len(data) != 1:
        names = ", ".join(i.name for i in data) or "none"
        raise BncError(f"{where}: the graph takes {len(data)} data inputs ({names}); bnc"
                       " compiles models with one")  # fmt: skip
    tt = data[0].type.tensor_type
    if not tt.HasField("shape"):
        dims: list[int | None] = []
    else:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]  # fmt: skip
    from onnx import TensorProto

    if tt.elem_type not in (TensorProto.FLOAT, 0):
        raise BncError(f"{where}: input '{data[0].name}' is not float32; bnc takes float32"
                       " inputs")  # fmt: skip
    recorded = tuple(dims[1:]) if dims else ()
    if len(recorded) not in (1, 3) or any(d is None for d in recorded):
        if given is None:
            shown = ",".join("?" if d is None else str(d) for d in dims) or "unknown"
            raise BncError(f"{where}: input '{data[0].name}' has dynamic shape ({shown});"
                           " bnc needs static C,H,W: pass --input-shape C,H,W")  # fmt: skip
        return tuple(given)
    if given is not None and tuple(given) != recorded:
        raise BncError(f"{where}: the model's input is {','.join(map(str, recorded))} but"
                       f" --input-shape is {','.join(map(str, given))}")  # fmt: skip
    return tuple(int(d) for d in recorded)  # type: ignore[arg-type]


def read_onnx(path: Path):
    """The ModelProto of ``path``, its external data loaded; one line on any failure."""
    try:
        import onnx
    except ImportError:
        raise BncError(f"{path}: reading QONNX needs the onnx package (pip install"
                       " onnx==1.17.0)") from None  # fmt: skip
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise BncError(f"{path}: not an ONNX model ({_first(e)})") from None
    if not model.graph.node and not model.graph.input:
        raise BncError(f"{path}: not an ONNX model (no graph)")
    if model.ir_version > onnx.IR_VERSION or model.ir_version < 3:
        raise BncError(f"{path}: ONNX IR version {model.ir_version}; the installed onnx"
                       f" {onnx.__version__} reads 3 to {onnx.IR_VERSION}")  # fmt: skip
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    top = onnx.defs.onnx_opset_version()
    if default and default[0] > top:
        raise BncError(f"{path}: ONNX opset {default[0]}; the installed onnx"
                       f" {onnx.__version__} knows opsets up to {top}")  # fmt: skip
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if external:
        base = Path(path).parent
        for t in external:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if not (base / loc).is_file():
                raise BncError(f"{path}: initializer '{t.name}' is stored in '{loc}', which is"
                               f" not next to the model ({base / loc} is missing)")  # fmt: skip
        try:
            load_external_data_for_model(model, str(base))
        except Exception as e:  # noqa: BLE001
            raise BncError(f"{path}: its external data is unreadable ({_first(e)})") from None
    return model


def onnx_to_graph(model, where: str, input_shape: tuple[int, ...] | None) -> tuple[Graph, tuple]:
    shape = input_dims(model, where, input_shape)
    imp = _Importer(model, where, shape)
    graph = imp.run()
    if INPUT not in graph.live():
        raise BncError(f"{where}: the graph's output does not depend on its input")
    return graph, shape


def from_brevitas(module, where: str, input_shape: tuple[int, ...] | None):
    """A Brevitas module, exported to QONNX in memory (``export_qonnx``) and imported as a
    file would be."""
    if input_shape is None:
        raise BncError(f"{where}: a Brevitas module does not record its input shape; pass"
                       " --input-shape C,H,W (e.g. 1,28,28)")  # fmt: skip
    import contextlib
    import io
    import tempfile
    import warnings

    import torch

    try:
        from brevitas.export import export_qonnx
    except ImportError:
        raise BncError(f"{where}: a Brevitas module needs brevitas (pip install"
                       " brevitas==0.13.4)") from None  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                export_qonnx(module.eval(), torch.rand(1, *input_shape), export_path=str(out))
        except Exception as e:  # noqa: BLE001 - the exporter raises many kinds
            raise BncError(
                f"{where}: Brevitas could not export it to QONNX with input shape"
                f" {','.join(map(str, input_shape))} ({_first(e)})"
            ) from None
        model = read_onnx(out)
    return onnx_to_graph(model, where, tuple(input_shape))
