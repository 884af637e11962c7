"""The lowering core every backend shares: one walk over the lowered DAG, one memory plan.

``schedule(graph)`` turns the lowered graph into a ``Schedule``: the input decoding and a list
of *steps* in execution order, each reading and writing ``Tensor`` records:

* ``ConvStep``: one binary layer over bits or codes. A ``Threshold`` or ``OutputAffine`` over
  ``K`` (T, S) pairs (a residual add folded in) becomes one step per layer: the first ones
  write (and then add to) an int64 partial plane, the last adds that plane and thresholds it
  (or writes the network's accumulator). An identity shortcut of bits (the 1x1 one-hot read
  ``FoldAdd`` makes, T unused) is no step and no plane: the last step adds ``±s[o]`` by the
  shortcut's bit at the same position (``BitAdd``). A ``SumConv2d`` read by several planes is
  computed once per reader;
* ``PoolStep`` (max-pool of bits), ``ConcatStep`` (channels of several bit tensors),
  ``SumPoolStep`` (a global average pool: the integer sum of bits or codes per channel).

``Flatten`` is no step: it is the same memory (it only ever reshapes a (C, 1, 1) tensor or the
network's accumulator). ``plan_memory`` places every tensor by liveness: a tensor lives from
the step that writes it to the last step that reads it, fan-out and shortcuts included.
Targets add only their own decisions (kernels, schedules, C types) on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum

import numpy as np

from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.analysis import is_identity
from bnc.ir.graph import INPUT, Graph, Node
from bnc.ir.types import Kind, TensorType

WORD = 32


class UnsupportedGraph(BncError):
    """The lowered graph has a shape a backend cannot express."""


def words(c: int) -> int:
    return (c + WORD - 1) // WORD


class ViewKind(StrEnum):
    """What a target's layer view is; templates branch on ``L.kind`` (``"pool"``...)."""

    CONV = "conv"  # a binary layer, generic / dense schedule
    PLANAR = "planar"  # C: the planar schedule
    CODES = "codes"  # Cortex-M: a layer over codes
    ALT = "alt"  # C: one layer in two schedules, chosen by the vector path it is compiled for
    CODE_PLANAR = "code-planar"  # C: a stride-1 layer over integer codes, sums of shifted planes
    POOL = "pool"
    CONCAT = "concat"
    SUM_POOL = "sum-pool"


class Storage(Enum):
    """How a tensor is held: packed bits ``[H][W][words]`` of uint32, integer values (C, H, W)
    of a code tensor (``q - zero_point``, in the narrowest C integer type, ``code_ctype``), the
    network input's codes (C, H, W), or an int64 plane (C, H, W)."""

    BITS = "bits"
    CODES = "codes"
    INPUT_CODES = "input-codes"
    PLANE = "plane"
    BIT_PLANES = "bit-planes"  # k bit tensors of u = value - lo, plane j weighing 2^j


@dataclass(frozen=True)
class Tensor:
    id: int
    value: str  # the IR value it holds
    storage: Storage
    shape: tuple[int, int, int]
    lo: int = -1  # value range of codes
    hi: int = 1
    output: bool = False  # the network's accumulator (the caller's buffer, not planned)
    planes: int = 1  # BIT_PLANES: k

    @property
    def packed(self) -> bool:
        """Held as packed bits: a bit tensor, or the k bit planes of a code tensor."""
        return self.storage in (Storage.BITS, Storage.BIT_PLANES)

    @property
    def plane_weights(self) -> tuple[int, ...]:
        """What a one bit of each plane adds to an element's value: 2 for bits (2a - 1), 2^j
        for the planes of a code."""
        return (2,) if self.storage is Storage.BITS else tuple(1 << j for j in range(self.planes))

    @property
    def tap_offset(self) -> int:
        """An element's value when all its bits are zero: -1 for bits, ``lo`` for codes."""
        return -1 if self.storage is Storage.BITS else self.lo

    @property
    def c(self) -> int:
        return self.shape[0]

    @property
    def nw(self) -> int:
        return words(self.c)

    def units(self) -> int:
        """Words (bits), elements (codes) or int64s (planes) it takes."""
        c, h, w = self.shape
        if self.packed:
            return self.planes * words(c) * h * w
        return c * h * w

    @property
    def ctype(self) -> str:
        """C type of one element: uint32_t words, a code's narrowest type, int64_t planes."""
        if self.packed:
            return "uint32_t"
        if self.storage is Storage.PLANE:
            return "int64_t"
        return code_ctype(self.lo, self.hi)

    def nbytes(self) -> int:
        size = {"uint32_t": 4, "int64_t": 8, "int32_t": 4, "int16_t": 2, "uint16_t": 2}
        return self.units() * size.get(self.ctype, 1)


def code_ctype(lo: int, hi: int) -> str:
    """The narrowest C integer type holding every value in ``[lo, hi]``."""
    for name, a, b in (("int8_t", -128, 127), ("uint8_t", 0, 255), ("int16_t", -(1 << 15),
                       (1 << 15) - 1), ("uint16_t", 0, (1 << 16) - 1)):  # fmt: skip
        if a <= lo and hi <= b:
            return name
    return "int32_t"


@dataclass(frozen=True)
class Geometry:
    """A window walk: input (C, H, W), output (O, OH, OW), kernel, stride and padding."""

    c: int
    h: int
    w: int
    o: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int

    def fields(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Geometry)}

    @property
    def taps(self) -> int:
        return self.kh * self.kw


class Mode(Enum):
    THRESHOLD = "threshold"  # writes bits: 1[plane + c >= 0]
    PLANE = "plane"  # writes the int64 plane (a partial sum, or the network's accumulator)
    MULTI = "multi"  # writes codes: the thresholds passed (``CodeOut``)
    REQUANT = "requant"  # writes codes: the plane rounded and clamped (``CodeOut``)


@dataclass(frozen=True)
class CodeOut:
    """How a step that writes codes turns its plane into values ``q - zero_point``:
    ``MULTI``: ``qmin - zp + #{l : plane + c[l][o] >= 0}``; ``REQUANT``:
    ``clamp(round_shift(plane + c[o], shift[o]), qmin, qmax) - zp`` (``bnc.ir.ops``)."""

    c: tuple[tuple[int, ...], ...]  # MULTI: (L, O) thresholds; REQUANT: one row, (O,)
    shift: tuple[int, ...]  # REQUANT
    qmin: int
    qmax: int
    zero_point: int


@dataclass(frozen=True)
class InputStep:
    sign: bool  # bnc.nn.Sign on the input (bits), else the input quantizer (codes)
    scale: float
    qmin: int
    qmax: int
    dst: Tensor  # the codes as values q - zero_point (lo/hi are value bounds)
    zero_point: int = 0
    threshold: float = 0.0  # Sign: 1[x >= threshold], a float32
    mul: float = 1.0  # the quantizer: v = x * mul + add first (float32, each step rounded)
    add: float = 0.0


@dataclass(frozen=True)
class BitAdd:
    """An identity shortcut added where the plane is formed: of bits, ``+s[o]`` where the
    shortcut's bit ``src[o, p]`` is 1 and ``-s[o]`` where it is 0; of codes held as integer
    values, ``+s[o] * src[o, p]``."""

    src: Tensor
    s: tuple[int, ...]

    def view(self, expr: str) -> BitAddView:
        c, h, w = self.src.shape
        codes = self.src.storage is not Storage.BITS
        return BitAddView(expr, self.src.nw, self.s, codes, h * w)


@dataclass(frozen=True)
class PointBranch:
    """A 1x1, unpadded layer over bits (a downsampling shortcut) computed inside the step that
    thresholds, position by position, instead of into a partial plane: adds
    ``t[o]*T + s[o]*S[o]`` of ``src`` at ``(oy*stride, ox*stride)``."""

    src: Tensor
    weight: np.ndarray  # bool (O, C, 1, 1)
    stride: tuple[int, int]
    t: tuple[int, ...]
    s: tuple[int, ...]


@dataclass(frozen=True)
class BitAddView:
    """A ``BitAdd`` as C sees it: the shortcut (an expression), its words per pixel (bits) or
    that it holds codes and their positions per channel, and the coefficients."""

    src: str
    nw: int
    s: tuple[int, ...]
    codes: bool = False
    hw: int = 0


@dataclass(frozen=True)
class PointView:
    """A ``PointBranch`` as C sees it: its bits, geometry, packed weights and coefficients."""

    src: str
    c: int
    w: int  # input width
    nw: int
    sh: int
    sw: int
    weights: tuple[str, ...]  # [o][nw] hex words
    nnz: tuple[int, ...]
    t: tuple[int, ...]
    s: tuple[int, ...]


@dataclass(frozen=True)
class Mask:
    """One more binary mask of a layer over the same input and window walk (multi-level
    weights): ``+ s[o] * S`` of ``weight``; T is the step's, shared."""

    weight: np.ndarray  # bool (O, C, kh, kw)
    s: tuple[int, ...]


@dataclass(frozen=True)
class ConvStep:
    index: int
    name: str
    geo: Geometry
    src: Tensor
    dst: Tensor
    weight: np.ndarray  # bool (O, C, kh, kw)
    t: tuple[int, ...]  # per output channel
    s: tuple[int, ...]
    c: tuple[int, ...]  # threshold constant (zeros in PLANE mode)
    mode: Mode
    acc_in: Tensor | None  # a partial plane to add before thresholding / writing
    bit_adds: tuple[BitAdd, ...] = ()  # identity shortcuts of bits, added at the same place
    points: tuple[PointBranch, ...] = ()  # 1x1 branches computed in place (fuse_points)
    code_out: CodeOut | None = None  # MULTI / REQUANT
    more: tuple[Mask, ...] = ()  # masks after the first (merge_masks)

    @property
    def masks(self) -> tuple[Mask, ...]:
        """Every mask, the first (``weight``, ``s``) included."""
        return (Mask(self.weight, self.s), *self.more)

    @property
    def adds(self) -> bool:
        """Something is added to the layer's own plane (a partial plane or a shortcut)."""
        return self.acc_in is not None or bool(self.bit_adds) or bool(self.points)

    @property
    def bits_in(self) -> bool:
        return self.src.storage is Storage.BITS

    @property
    def packed_in(self) -> bool:
        """The input is packed bits: a bit tensor or the bit planes of codes."""
        return self.src.packed

    @property
    def final(self) -> bool:
        return self.dst.output

    def view_fields(self) -> dict[str, object]:
        """What every target's layer view of this step starts with: the geometry, the step's
        index and name, and whether it writes an int64 plane (else bits)."""
        return {
            **self.geo.fields(),
            "index": self.index,
            "name": self.name,
            "plane_out": self.mode is Mode.PLANE,
        }

    @property
    def codes_out(self) -> bool:
        return self.mode in (Mode.MULTI, Mode.REQUANT)

    @property
    def value_range(self) -> tuple[int, int]:
        """Range of one tap's value (0 for a padded tap included)."""
        if self.bits_in:
            return -1, 1
        return min(self.src.lo, 0), max(self.src.hi, 0)


@dataclass(frozen=True)
class PoolStep:
    index: int
    name: str
    geo: Geometry
    src: Tensor
    dst: Tensor
    and_mask: np.ndarray


@dataclass(frozen=True)
class ConcatStep:
    index: int
    name: str
    srcs: tuple[Tensor, ...]
    dst: Tensor

    @property
    def offsets(self) -> tuple[int, ...]:
        """First output channel of each source."""
        out, c = [], 0
        for s in self.srcs:
            out.append(c)
            c += s.c
        return tuple(out)


@dataclass(frozen=True)
class SumPoolStep:
    index: int
    name: str
    src: Tensor
    dst: Tensor


Step = ConvStep | PoolStep | ConcatStep | SumPoolStep


@dataclass(frozen=True)
class Schedule:
    input: InputStep
    steps: tuple[Step, ...]
    tensors: tuple[Tensor, ...]
    output: Tensor
    out_affine: O.OutputAffine

    def reads(self, step: Step) -> tuple[Tensor, ...]:
        if isinstance(step, ConcatStep):
            return step.srcs
        if isinstance(step, ConvStep):
            extra = (step.acc_in,) if step.acc_in is not None else ()
            return (step.src, *extra, *(b.src for b in (*step.bit_adds, *step.points)))
        return (step.src,)

    def readers(self, tensor: Tensor) -> list[Step]:
        return [s for s in self.steps if tensor in self.reads(s)]


@dataclass(frozen=True)
class ModelIO:
    """What every C dialect's model view shares: the input decoding (the quantizer's scale as a
    float32 hex literal, or Sign) and the output's per-channel affine (hex doubles)."""

    name: str
    input_size: int
    output_size: int
    input_kind: str  # "quantize" or "sign"
    input_c: int
    input_h: int
    input_w: int
    input_nw: int
    scale_hex: str
    qmin: int
    qmax: int
    zero_point: int  # stored codes are q - zero_point
    threshold_hex: str  # Sign: the float32 compared against, as a hex literal
    mul_hex: str  # the quantizer's float32 affine before it ("" where 1 and 0)
    add_hex: str
    out_channels: int
    out_per_channel: int
    out_scale: tuple[str, ...]
    out_bias: tuple[str, ...]

    @staticmethod
    def of(graph: Graph, sched: Schedule, name: str) -> ModelIO:
        inp, out = sched.input, sched.out_affine
        c, h, w = graph.input.shape
        o = out.scale.shape[0]
        return ModelIO(
            name=name,
            input_size=c * h * w,
            output_size=graph.output.size,
            input_kind="sign" if inp.sign else "quantize",
            input_c=c,
            input_h=h,
            input_w=w,
            input_nw=words(c),
            scale_hex="0x1p+0" if inp.sign else float(np.float32(inp.scale)).hex(),
            qmin=inp.qmin,
            qmax=inp.qmax,
            zero_point=inp.zero_point,
            threshold_hex=float(np.float32(inp.threshold)).hex() if inp.threshold else "0.0",
            mul_hex=float(np.float32(inp.mul)).hex() if inp.mul != 1.0 else "",
            add_hex=float(np.float32(inp.add)).hex() if inp.add != 0.0 else "",
            out_channels=o,
            out_per_channel=graph.output.size // o,
            out_scale=tuple(float(v).hex() for v in out.scale),
            out_bias=tuple(float(v).hex() for v in out.bias),
        )

    def fields(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelIO)}


def _geometry(t_in: tuple[int, int, int], out: tuple[int, int, int], kernel, stride, pad):
    c, h, w = t_in
    o, oh, ow = out
    return Geometry(c, h, w, o, oh, ow, *kernel, *stride, *pad)


def schedule(
    graph: Graph,
    fuse_points: bool = False,
    merge_masks: bool = False,
    code_planes: int = 0,
    ride_identities: bool = False,
) -> Schedule:
    """The steps of a lowered graph in execution order (see the module docstring).

    ``fuse_points``: a 1x1 unpadded branch over bits beside a wider layer is computed inside
    that layer's step (``PointBranch``) instead of into an int64 partial plane; a target that
    is short of memory (Cortex-M) takes it. ``merge_masks``: the masks of one layer (operands
    over the same input and window walk) are one step (``ConvStep.more``), T counted once.
    ``code_planes``: codes of up to that many bits are held as bit planes (``BIT_PLANES``),
    wider ones as integers. ``ride_identities``: a plane whose operands are all identity
    shortcuts (an add of two tensors) computes the last as its layer and adds the others
    where it thresholds (``BitAdd``), instead of writing a partial plane."""
    tensors: list[Tensor] = []
    by_value: dict[str, Tensor] = {}
    steps: list[Step] = []

    def tensor(value: str, storage: Storage, shape, lo=-1, hi=1, output=False) -> Tensor:
        t = Tensor(len(tensors), value, storage, tuple(shape), lo, hi, output)
        tensors.append(t)
        return t

    def codes(value: str, ty) -> Tensor:
        lo, hi = ty.value_range
        if ty.bits <= code_planes:
            t = Tensor(len(tensors), value, Storage.BIT_PLANES, ty.shape, lo, hi, planes=ty.bits)
            tensors.append(t)
            return t
        return tensor(value, Storage.CODES, ty.shape, lo, hi)

    result = graph.result
    while isinstance((p := graph.producer(result)) and p.op, O.Flatten):
        result = p.args[0]
    inp: InputStep | None = None
    out_op: O.OutputAffine | None = None
    out_tensor: Tensor | None = None
    for node in graph.nodes:
        op, ty = node.op, graph.types[node.out]
        if isinstance(op, O.QuantizeInput | O.Sign):
            if INPUT not in node.args or inp is not None:
                raise UnsupportedGraph(f"layer '{op.name}': only the network input is quantized")
            if isinstance(op, O.Sign):
                dst = tensor(node.out, Storage.BITS, ty.shape)
                inp = InputStep(True, 1.0, 0, 0, dst, threshold=float(op.threshold))
            else:
                zp = op.zero_point
                dst = tensor(node.out, Storage.INPUT_CODES, ty.shape, op.qmin - zp, op.qmax - zp)
                inp = InputStep(False, float(op.scale), op.qmin, op.qmax, dst, zp, 0.0,
                                float(op.mul), float(op.add))  # fmt: skip
            by_value[node.out] = dst
        elif isinstance(op, O.SumConv2d):
            continue  # computed by the plane that reads it
        elif isinstance(op, O.Threshold | O.MultiThreshold | O.Requantize | O.OutputAffine):
            final = isinstance(op, O.OutputAffine)
            code_out, mode_last = None, Mode.THRESHOLD
            if final:
                if node.out != result:
                    raise UnsupportedGraph(f"layer '{op.name}': the output must be the result")
                dst = tensor(node.out, Storage.PLANE, ty.shape, output=True)
                out_op, out_tensor = op, dst
                mode_last = Mode.PLANE
            elif isinstance(op, O.MultiThreshold | O.Requantize):
                dst = codes(node.out, ty)
                code_out = _code_out(op, ty)
                mode_last = Mode.MULTI if isinstance(op, O.MultiThreshold) else Mode.REQUANT
            else:
                dst = tensor(node.out, Storage.BITS, ty.shape)
            order = _operand_order(graph, node)
            riding = [k for k in order if _bit_shortcut(graph, node, k, by_value)]
            if len(riding) == len(order):  # one real layer computes; the shortcuts ride on it
                riding = riding[:-1] if ride_identities else []
            bit_adds = tuple(
                BitAdd(by_value[_conv_of(graph, node, k).args[0]], tuple(int(v) for v in op.s[k]))
                for k in riding
            )
            order = [k for k in order if k not in riding]
            points: tuple[PointBranch, ...] = ()
            if fuse_points and len(order) > 1:
                windows = [_window(graph, node, k) for k in order]
                alone = [k for k, w in zip(order, windows, strict=True) if windows.count(w) == 1]
                fused = [k for k in order[:-1] if _point(graph, node, k)
                         and (k in alone or not merge_masks)]  # fmt: skip
                points = tuple(_point_branch(graph, node, k, by_value) for k in fused)
                order = [k for k in order if k not in fused]
            merged: dict[int, list[int]] = {}
            if merge_masks:
                order, merged = _merge_masks(graph, node, order)
            partial: Tensor | None = None
            for j, k in enumerate(order):
                conv = _conv_of(graph, node, k)
                last = j == len(order) - 1
                src = by_value[conv.args[0]]
                cw = conv.op
                geo = _geometry(
                    graph.types[conv.args[0]].shape, ty.shape, cw.weight.shape[2:], cw.stride,
                    cw.padding,
                )  # fmt: skip
                if last:
                    out, mode = dst, mode_last
                    thr = mode is Mode.THRESHOLD
                    cc = tuple(int(v) for v in op.c) if thr else (0,) * geo.o
                else:
                    if partial is None:
                        partial = tensor(f"{node.out}.partial", Storage.PLANE, ty.shape)
                    out, mode, cc = partial, Mode.PLANE, (0,) * geo.o
                others = merged.get(k, [])
                t_k = op.t[k] + sum(op.t[m] for m in others)
                more = tuple(Mask(_conv_of(graph, node, m).op.weight,  # type: ignore[attr-defined]
                                  tuple(int(v) for v in op.s[m])) for m in others)  # fmt: skip
                step = ConvStep(
                    len(steps), op.name if last else cw.name, geo, src, out,
                    cw.weight, tuple(int(v) for v in t_k), tuple(int(v) for v in op.s[k]),
                    cc, mode, partial if j > 0 else None, bit_adds if last else (),
                    points if last else (), code_out if last else None, more,
                )  # fmt: skip
                steps.append(step)
            by_value[node.out] = dst
        elif isinstance(op, O.BitMaxPool2d):
            src = by_value[node.args[0]]
            if ty.kind is Kind.BIT:
                dst = tensor(node.out, Storage.BITS, ty.shape)
            elif src.storage is Storage.INPUT_CODES:
                dst = tensor(node.out, Storage.CODES, ty.shape, *ty.value_range)
            else:
                dst = codes(node.out, ty)
            geo = _geometry(src.shape, ty.shape, op.kernel, op.stride, op.padding)
            steps.append(PoolStep(len(steps), op.name, geo, src, dst, op.and_mask))
            by_value[node.out] = dst
        elif isinstance(op, O.Concat):
            srcs = tuple(by_value[a] for a in node.args)
            dst = tensor(node.out, Storage.BITS, ty.shape)
            steps.append(ConcatStep(len(steps), op.name, srcs, dst))
            by_value[node.out] = dst
        elif isinstance(op, O.GlobalAvgPool):
            src = by_value[node.args[0]]
            dst = tensor(node.out, Storage.CODES, ty.shape, ty.lo, ty.hi)
            steps.append(SumPoolStep(len(steps), op.name, src, dst))
            by_value[node.out] = dst
        elif isinstance(op, O.Flatten):
            src_t = graph.types[node.args[0]]
            if node.args[0] != result and src_t.shape[1:] != (1, 1):
                raise UnsupportedGraph(
                    f"layer '{op.name}': a Flatten of {src_t} must feed a BinaryLinear"
                )
            if node.args[0] in by_value:
                by_value[node.out] = by_value[node.args[0]]
        else:
            raise UnsupportedGraph(f"layer '{op.name}' ({op.opname}) has no lowering")
    if inp is None or out_op is None or out_tensor is None:
        raise UnsupportedGraph("the graph has no input quantizer or no output layer")
    return Schedule(inp, tuple(steps), tuple(tensors), out_tensor, out_op)


def _window(graph: Graph, plane: Node, k: int) -> tuple:
    """What operands must share to be one step: the input value and the window walk."""
    conv = _conv_of(graph, plane, k)
    return (conv.args[0], conv.op.weight.shape, conv.op.stride, conv.op.padding)


def _merge_masks(graph: Graph, plane: Node, order: list[int]) -> tuple[list[int], dict]:
    """Operands over one input and window walk become one step: the first of them (in
    ``order``) and the operand indices merged into it."""
    first: dict[tuple, int] = {}
    merged: dict[int, list[int]] = {}
    kept = []
    for k in order:
        key = _window(graph, plane, k)
        if key in first:
            merged[first[key]].append(k)
        else:
            first[key] = k
            merged[k] = []
            kept.append(k)
    return kept, {k: v for k, v in merged.items() if v}


def _code_out(op: O.MultiThreshold | O.Requantize, ty: TensorType) -> CodeOut:
    """The step's code output; ``ty`` is the op's result type (its codes' range)."""
    rows = tuple(tuple(int(v) for v in row) for row in op.c.reshape(-1, op.c.shape[-1]))
    shift = tuple(int(v) for v in op.shift) if isinstance(op, O.Requantize) else ()
    return CodeOut(rows, shift, ty.lo, ty.hi, ty.zero_point)


def _conv_of(graph: Graph, plane: Node, k: int) -> Node:
    """The ``SumConv2d`` node of a plane's operand ``k``."""
    conv = graph.producer(plane.args[k])
    assert conv is not None and isinstance(conv.op, O.SumConv2d)
    return conv


def _bit_shortcut(graph: Graph, plane: Node, k: int, by_value: dict[str, Tensor]) -> bool:
    """Operand ``k`` is an identity read with no T term of bits (``s[o] * (2a[o] - 1)``) or of
    codes held as integer values (``s[o] * x[o]``)."""
    conv = _conv_of(graph, plane, k)
    src = by_value.get(conv.args[0])
    return (
        is_identity(conv.op)
        and src is not None
        and src.storage in (Storage.BITS, Storage.CODES, Storage.INPUT_CODES)
        and not plane.op.t[k].any()  # type: ignore[attr-defined]
    )


def _point(graph: Graph, plane: Node, k: int) -> bool:
    conv = _conv_of(graph, plane, k)
    w = conv.op.weight
    return (
        w.shape[2:] == (1, 1)
        and conv.op.padding == (0, 0)
        and graph.types[conv.args[0]].kind is Kind.BIT
    )


def _point_branch(graph: Graph, plane: Node, k: int, by_value: dict[str, Tensor]) -> PointBranch:
    conv = _conv_of(graph, plane, k)
    op = plane.op
    assert isinstance(op, O.Threshold | O.MultiThreshold | O.Requantize | O.OutputAffine)
    return PointBranch(
        by_value[conv.args[0]], conv.op.weight, conv.op.stride,
        tuple(int(v) for v in op.t[k]), tuple(int(v) for v in op.s[k]),
    )  # fmt: skip


def _operand_order(graph: Graph, plane: Node) -> list[int]:
    """The order a plane's (T, S) operands are computed in: the widest layer last (it
    thresholds), identity shortcuts first."""

    def cost(k: int) -> int:
        return int(_conv_of(graph, plane, k).op.weight.size)  # type: ignore[attr-defined]

    return sorted(range(len(plane.args)), key=lambda k: (cost(k), k))


# --- the memory plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One buffer of a pool: its byte offset and size, and the steps it is live over."""

    key: object  # a Tensor, or (step index, "scratch")
    offset: int
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class MemoryPlan:
    """Byte offsets in each pool (by name), the pools' sizes, and what one buffer per tensor
    would take."""

    regions: dict[object, Region]
    sizes: dict[str, int]
    per_tensor: dict[str, int]
    peak_step: dict[str, int]

    def offset(self, key: object) -> int:
        return self.regions[key].offset


ALIGN = 8


def _round(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(
    sched: Schedule,
    pool_of: Callable[[Tensor], str | None],
    size_of: Callable[[Tensor], int],
    scratch: dict[int, tuple[str, int]] | None = None,
) -> MemoryPlan:
    """Place every tensor ``pool_of`` names a pool for (None: not planned) and every step's
    scratch (``scratch[step index] = (pool, bytes)``). A tensor is live from the step that
    writes it (-1: the input) through the last step that reads it; two buffers share bytes
    only when their live ranges do not meet. Greedy by size, lowest free offset first."""
    wanted: list[tuple[str, object, int, int, int]] = []
    writer: dict[int, int] = {}
    for step in sched.steps:
        writer.setdefault(step.dst.id, step.index)
    for t in sched.tensors:
        pool = pool_of(t)
        if pool is None:
            continue
        first = -1 if t is sched.input.dst else writer[t.id]
        readers = [s.index for s in sched.readers(t)]
        last = max([first, *readers])
        wanted.append((pool, t, _round(size_of(t)), first, last))
    for idx, (pool, size) in (scratch or {}).items():
        wanted.append((pool, (idx, "scratch"), _round(size), idx, idx))
    regions: dict[object, Region] = {}
    sizes: dict[str, int] = {}
    per_tensor: dict[str, int] = {}
    peak: dict[str, int] = {}
    for pool in sorted({w[0] for w in wanted}):
        mine = [w for w in wanted if w[0] == pool]
        placed: list[Region] = []
        for _, key, size, first, last in sorted(mine, key=lambda w: (-w[2], w[3], str(w[1]))):
            busy = sorted(
                (r.offset, r.offset + r.size)
                for r in placed
                if not (r.last < first or last < r.first)
            )
            off = 0
            for lo, hi in busy:
                if off + size <= lo:
                    break
                off = max(off, hi)
            region = Region(key, off, size, first, last)
            placed.append(region)
            regions[key] = region
        sizes[pool] = max((r.offset + r.size for r in placed), default=0)
        per_tensor[pool] = sum(r.size for r in placed)
        live = {
            i: sum(r.size for r in placed if r.first <= i <= r.last)
            for i in range(-1, len(sched.steps))
        }
        peak[pool] = max(live, key=lambda i: (live[i], -i))
    return MemoryPlan(regions, sizes, per_tensor, peak)
