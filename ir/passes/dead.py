"""``DropDeadChannels``: output channels that no input can change, or that nothing reads, are
removed together with the matching inputs of every reader (DESIGN §1, "drop dead channels").

It runs last, after ``FoldAffine``, ``FoldSign``, ``FoldQuantize`` and ``QuantizeOutput``:
only then is every ``Threshold``, ``MultiThreshold`` and ``Requantize`` an exact integer test
or rounding of a plane ``P[o] = sum_i t[i,o]*T_i + s[i,o]*S_i[o]`` plus ``c[o]`` (before,
BatchNorms, adds and quantizers are still real ``Affine`` ops), the plane's range follows from
the codes' ranges (as the widths proof in ``bnc.ir.analysis`` bounds it, here per channel and
signed), and a constant folded into ``c`` is integer arithmetic: the result is bit-exact by
construction, not by measurement.

**Constant channels.** Per plane, the operands ``i`` that read one tensor with one geometry (a
layer's masks) are one weight per tap, ``w[o,c,k] = sum_i (t[i,o] + s[i,o]*b_i[o,c,k])``, so
``P[o]`` lies in ``sum_c sum_k [min, max](w[o,c,k] * X_c)`` with ``X_c`` the values channel
``c`` can hold (only its own if it is itself constant; 0 too where a tap may be padding). A
channel whose test, count or rounding is the same at both ends of that range is constant:
``γ = 0`` (no coefficient left, a mask bit set: the weights are not all zero); all-zero
weights (coefficients left but every tap's weight is 0); "γ = 0 or all-zero weights" (no
coefficient and no mask bit: every weight is one level, and the plane cannot tell whether
that level or γ was 0, e.g. a pruned ternary channel); constant inputs (every weighted tap
reads a constant channel); or a threshold out of reach (``c`` below the plane's minimum or
above its maximum).

**Removal.** A channel is removed when every reader copes without it (a greatest fixpoint:
start with every channel of every plane, pool and concat removable, take back what a reader
needs, repeat):

* a layer (the ``SumConv2d`` masks of one plane over the tensor): its weights on the channel
  are zero for every output channel that stays (the channel is *unread*), or the channel is
  constant with value ``v`` and the layer has no padding, so its contribution is the same
  ``v * sum_k w[o,c,k]`` at every position and goes into ``c[o]`` (every row of a
  multi-threshold); with zero padding a border window sees fewer taps, so a constant channel
  stays unless ``v = 0`` (the code standing for 0: a padded tap's value). Exact, no margin.
* the network's ``OutputAffine`` (``y = float32(acc*scale + bias)``): the constant goes into
  ``bias`` only where that is exact in float64: ``scale`` a power of two, ``bias +
  K*scale`` representable, and ``|acc|`` within 2^53 before and after, so the one rounding of
  ``acc*scale + bias`` is of the same real number (fused or not). Otherwise it stays.
* an identity read with T unused (``FoldAdd``'s residual shortcut, ``FoldSign``'s read of
  codes): channel ``c`` of its input and channel ``c`` of the plane go together or stay
  together, so the read stays an identity (a one-hot read, not a layer of weights, for every
  backend); a residual stream's constant channel therefore stays unless the sum's channel is
  removable too.
* a max-pool or global average pool: channel for channel, with its output (a constant stays
  constant: the max of one value, ``v * H*W`` for the sum); a concat: its operands' channels
  with their place in the output (an operand with nothing left is dropped, a concat of one
  operand is that operand);
* a ``Flatten``, the network input's codes, the network output, sums read by several
  planes: nothing is removed there.

A tensor keeps at least one channel unless it is only concatenated (or pooled into a concat).
A channel left constant is never wrong, only not minimal: ``bnc inspect`` lists those with
the reason. One analysis finds the greatest fixpoint, so a second application removes
nothing. ``removed_channels(graph)`` gives what the pass removed to make ``graph`` (kept per
graph by the pass, as the pipeline's output carries no record of it), ``dead_channel_info``
what it would remove.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

import numpy as np

from bnc.ir import ops as O
from bnc.ir.analysis import is_identity
from bnc.ir.graph import Graph, Node
from bnc.ir.rewrite import Builder
from bnc.ir.types import Kind

_CODES = (O.Threshold, O.MultiThreshold, O.Requantize)  # planes whose channels may go
_PLANES = (*_CODES, O.OutputAffine)
_CHANNELWISE = (O.BitMaxPool2d, O.GlobalAvgPool)
_INT64 = 1 << 63
_FLOAT_EXACT = 1 << 53


class Why(Enum):
    """Why a channel was removed."""

    GAMMA_ZERO = "γ = 0"
    ZERO_WEIGHTS = "all-zero weights"
    NO_TERM = "γ = 0 or all-zero weights"  # no coefficient and no mask bit: either
    CONSTANT_INPUTS = "constant inputs"
    OUT_OF_REACH = "threshold out of reach"
    UNREAD = "unread"


class Kept(Enum):
    """Why a constant channel stays."""

    PADDED = "read by a zero-padded layer"
    SHORTCUT = "its identity shortcut's other side stays"
    OUTPUT = "the output affine cannot absorb it exactly"
    PINNED = "read by a Flatten, the output or shared sums"
    LAST = "its tensor keeps one channel"


@dataclass(frozen=True, slots=True)
class LayerDeadInfo:
    """One plane's channels: ``removed`` (original index, why) and the constant channels
    ``kept`` (original index, why not removed)."""

    layer: str  # the layer as bnc inspect's table names it
    op: str  # the plane's op name
    channels: int  # output channels before the pass
    removed: tuple[tuple[int, Why], ...]
    kept: tuple[tuple[int, Kept], ...]


@dataclass(frozen=True, slots=True)
class DeadChannelInfo:
    """Every plane with a channel removed or a constant channel kept, in graph order."""

    layers: tuple[LayerDeadInfo, ...]

    @property
    def removed(self) -> int:
        return sum(len(r.removed) for r in self.layers)

    @property
    def kept(self) -> int:
        return sum(len(r.kept) for r in self.layers)


@dataclass(frozen=True)
class _Group:
    """The operands of one plane that read tensor ``x`` with one geometry, as one weight per
    tap: ``wsum[o, c]`` its sum over the taps, ``pos`` / ``neg`` the sums of its positive and
    negative taps, ``reads[o, c]`` whether any tap is nonzero. ``identity``: an identity read
    with no T term (tied, not folded)."""

    x: str
    padded: bool
    wsum: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    reads: np.ndarray
    identity: bool


def _groups(graph: Graph, plane: Node) -> list[_Group]:
    op = plane.op
    assert isinstance(op, _PLANES)
    by_key: dict[tuple, list[int]] = {}
    for k, v in enumerate(plane.args):
        conv = graph.producer(v)
        assert conv is not None and isinstance(conv.op, O.SumConv2d)
        c = conv.op
        ident = is_identity(c) and not op.t[k].any()
        key = (conv.args[0], c.stride, c.padding, c.weight.shape[2:], v if ident else None)
        by_key.setdefault(key, []).append(k)
    out = []
    for (x, _, padding, kernel, ident), ks in by_key.items():
        # int64 where the coefficients' bound proves every sum fits, else Python integers
        coef = float((np.abs(op.t[ks]).astype(float) + np.abs(op.s[ks])).sum(axis=0).max())
        wide = coef * float(np.prod(kernel)) >= 2.0**62
        w: np.ndarray | int = 0
        for k in ks:
            b = graph.producer(plane.args[k]).op.weight  # type: ignore[union-attr]
            t, s = (v.astype(object if wide else np.int64)[:, None, None, None]
                    for v in (op.t[k], op.s[k]))  # fmt: skip
            w = w + t + s * b.astype(np.int64)
        assert isinstance(w, np.ndarray)
        pos, neg = np.maximum(w, 0).sum(axis=(2, 3)), np.minimum(w, 0).sum(axis=(2, 3))
        reads = (w != 0).any(axis=(2, 3))
        out.append(_Group(x, padding != (0, 0), pos + neg, pos, neg, reads, ident is not None))
    return out


@dataclass
class _Facts:
    """Forward facts per value: which channels are constant and their value (``q -
    zero_point``, bits ``2a - 1``), and per channel the range of values a tap holds."""

    const: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    why: dict[str, list[Why | None]]
    groups: dict[str, list[_Group]]
    ranges: dict[str, list[tuple[int, int]]]  # a plane's range of P (without c)

    def tap_range(self, graph: Graph, x: str) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = graph.types[x].value_range
        c = graph.types[x].channels
        los, his = np.full(c, lo, dtype=np.int64), np.full(c, hi, dtype=np.int64)
        k = self.const[x]
        los[k], his[k] = self.val[x][k], self.val[x][k]
        return los, his


def _plane_range(graph: Graph, facts: _Facts, groups: list[_Group]) -> list[tuple[int, int]]:
    lo_sum: object = 0
    hi_sum: object = 0
    for g in groups:
        lo, hi = facts.tap_range(graph, g.x)
        if g.padded:  # a padded tap holds 0
            lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
        lo, hi = lo.astype(object), hi.astype(object)
        pos, neg = g.pos.astype(object), g.neg.astype(object)
        lo_sum = lo_sum + pos @ lo + neg @ hi
        hi_sum = hi_sum + pos @ hi + neg @ lo
    return [(int(a), int(b)) for a, b in zip(lo_sum, hi_sum, strict=True)]  # type: ignore


def _constant(op: O.Op, o: int, lo: int, hi: int) -> int | None:
    """The value (``q - zero_point``; bits ``2a - 1``) channel ``o`` has for every plane in
    ``[lo, hi]``, or None."""
    if isinstance(op, O.Threshold):
        c = int(op.c[o])
        return 1 if lo + c >= 0 else -1 if hi + c < 0 else None
    if isinstance(op, O.MultiThreshold):
        rows = [int(v) for v in op.c[:, o]]
        if any(lo + c < 0 <= hi + c for c in rows):
            return None
        return op.qmin + sum(lo + c >= 0 for c in rows) - op.zero_point
    assert isinstance(op, O.Requantize)
    c = int(op.c[o])
    if max(abs(lo + c), abs(hi + c)) >= 1 << 62:
        return None
    q = np.clip(O.round_shift(np.array([lo + c, hi + c]), op.shift[o]), op.qmin, op.qmax)
    return int(q[0]) - op.zero_point if q[0] == q[1] else None


def _forward(graph: Graph) -> _Facts:
    f = _Facts({}, {}, {}, {}, {})
    for x, t in graph.types.items():
        if t.kind is not Kind.SUMS:
            f.const[x] = np.zeros(t.channels, dtype=bool)
            f.val[x] = np.zeros(t.channels, dtype=np.int64)
    for node in graph.nodes:
        op, out = node.op, node.out
        if isinstance(op, _PLANES):
            f.groups[out] = _groups(graph, node)
            f.ranges[out] = _plane_range(graph, f, f.groups[out])
        if isinstance(op, _CODES):
            why: list[Why | None] = []
            for o, (lo, hi) in enumerate(f.ranges[out]):
                v = _constant(op, o, lo, hi)
                why.append(None if v is None else _why(graph, node, f, o, lo, hi))
                if v is not None:
                    f.const[out][o], f.val[out][o] = True, v
            f.why[out] = why
        elif isinstance(op, _CHANNELWISE):
            n = 1
            if isinstance(op, O.GlobalAvgPool):
                n = int(np.prod(graph.types[node.args[0]].shape[1:]))
            f.const[out] = f.const[node.args[0]].copy()
            f.val[out] = f.val[node.args[0]] * n
        elif isinstance(op, O.Concat):
            f.const[out] = np.concatenate([f.const[a] for a in node.args])
            f.val[out] = np.concatenate([f.val[a] for a in node.args])
    return f


def _why(graph: Graph, plane: Node, f: _Facts, o: int, lo: int, hi: int) -> Why:
    op = plane.op
    assert isinstance(op, _CODES)
    if not op.t[:, o].any() and not op.s[:, o].any():
        # Weights with a mask bit in this channel are not all zero; without one they are all
        # one level, and a zero coefficient does not say whether the level or γ was 0.
        masks = any(graph.producer(v).op.weight[o].any() for v in plane.args)  # type: ignore
        return Why.GAMMA_ZERO if masks else Why.NO_TERM
    if not any(g.reads[o].any() for g in f.groups[plane.out]):
        return Why.ZERO_WEIGHTS
    return Why.CONSTANT_INPUTS if lo == hi else Why.OUT_OF_REACH


class _Marks:
    """The removable channels of every value, shrinking to the greatest fixpoint; the first
    reason a channel was taken back."""

    def __init__(self, graph: Graph) -> None:
        self.marks: dict[str, np.ndarray] = {}
        self.kept: dict[str, list[Kept | None]] = {}
        for x, t in graph.types.items():
            if t.kind is Kind.SUMS:
                continue
            p = graph.producer(x)
            free = p is not None and isinstance(p.op, (*_CODES, *_CHANNELWISE, O.Concat))
            self.marks[x] = np.full(t.channels, free and x != graph.result)
            self.kept[x] = [None if free else Kept.PINNED] * t.channels
        self.changed = False

    def take_back(self, x: str, which: np.ndarray, why: Kept | list[Kept | None]) -> None:
        hit = self.marks[x] & which
        for j in np.flatnonzero(hit):
            reason = why if isinstance(why, Kept) else why[j]
            self.kept[x][j] = self.kept[x][j] or reason or Kept.PINNED
        if hit.any():
            self.marks[x] = self.marks[x] & ~hit
            self.changed = True

    def tie(self, a: str, a_cut: slice, b: str, why: Kept | None = None) -> None:
        """Channels ``a[a_cut]`` and all of ``b`` go together."""
        ma, mb = self.marks[a][a_cut], self.marks[b]
        ka, kb = self.kept[a][a_cut], self.kept[b]
        full = np.zeros(len(self.marks[a]), dtype=bool)
        full[a_cut] = ma & ~mb
        self.take_back(a, full, [None] * a_cut.start + [why or r for r in kb])
        self.take_back(b, mb & ~ma, [why or r for r in ka])


def _offset_delta(graph: Graph, plane: Node, f: _Facts, m: _Marks) -> list[int]:
    """Per output channel of ``plane``, the constant its removed input channels contribute."""
    o = graph.types[plane.out].channels
    delta = [0] * o
    for g in f.groups[plane.out]:
        gone = m.marks[g.x] & f.const[g.x]
        if g.identity or not gone.any():
            continue
        vals = f.val[g.x].astype(object) * gone
        for j, d in enumerate(g.wsum.astype(object) @ vals):
            delta[j] += int(d)
    return delta


def _output_exact(graph: Graph, plane: Node, f: _Facts, delta: list[int]) -> list[bool]:
    """Per output channel: ``bias + delta*scale`` is exact and ``acc`` stays within 2^53, so
    ``float32(acc*scale + bias)`` is unchanged."""
    op = plane.op
    assert isinstance(op, O.OutputAffine)
    out = []
    for o, d in enumerate(delta):
        if d == 0:
            out.append(True)
            continue
        scale, bias = float(op.scale[o]), float(op.bias[o])
        lo, hi = f.ranges[plane.out][o]
        exact = Fraction(bias) + d * Fraction(scale)
        ok = (
            math.frexp(scale)[0] == 0.5
            and math.isfinite(float(exact))
            and Fraction(float(exact)) == exact
            and max(abs(lo), abs(hi), abs(lo - d), abs(hi - d)) <= _FLOAT_EXACT
        )
        out.append(ok)
    return out


def _fixpoint(graph: Graph, f: _Facts) -> _Marks:
    m = _Marks(graph)
    v = graph.result
    while (p := graph.producer(v)) is not None and isinstance(p.op, O.Flatten):
        v = p.args[0]
    m.take_back(v, np.ones_like(m.marks[v]), Kept.PINNED)
    m.changed = True
    while m.changed:
        m.changed = False
        for node in graph.nodes:
            op = node.op
            if isinstance(op, _CHANNELWISE):
                m.tie(node.args[0], slice(0, None), node.out)
            elif isinstance(op, O.Concat):
                c0 = 0
                for a in node.args:
                    c = graph.types[a].channels
                    m.tie(node.out, slice(c0, c0 + c), a)
                    c0 += c
            elif isinstance(op, O.Flatten):
                m.take_back(node.args[0], np.ones_like(m.marks[node.args[0]]), Kept.PINNED)
            elif isinstance(op, _PLANES):
                _plane_readers(graph, node, f, m)
        if not m.changed:
            _output_check(graph, f, m)
        if not m.changed:
            _keep_one(graph, m)
    return m


def _plane_readers(graph: Graph, plane: Node, f: _Facts, m: _Marks) -> None:
    """Take back the input channels ``plane``'s layers need, and its own channels where its
    sums are shared or an identity ties them."""
    out = plane.out
    shared = any(len(graph.users[a]) > 1 for a in plane.args)
    if shared and out in m.marks:
        m.take_back(out, np.ones_like(m.marks[out]), Kept.PINNED)
    kept_rows = ~m.marks[out] if isinstance(plane.op, _CODES) else np.ones(len(f.ranges[out]), bool)
    for g in f.groups[out]:
        if g.identity:
            if shared or isinstance(plane.op, O.OutputAffine):
                m.take_back(g.x, np.ones_like(m.marks[g.x]), Kept.SHORTCUT)
            else:
                m.tie(g.x, slice(0, None), out, Kept.SHORTCUT)
            continue
        read = g.reads[kept_rows].any(axis=0)
        const = f.const[g.x]
        fold = const & (~np.full_like(const, g.padded) | (f.val[g.x] == 0))
        m.take_back(g.x, read & ~fold & const, Kept.PADDED)
        m.take_back(g.x, read & ~const, Kept.PINNED)


def _output_check(graph: Graph, f: _Facts, m: _Marks) -> None:
    for node in graph.nodes:
        if not isinstance(node.op, O.OutputAffine):
            continue
        ok = _output_exact(graph, node, f, _offset_delta(graph, node, f, m))
        bad = ~np.array(ok)
        if not bad.any():
            continue
        for g in f.groups[node.out]:
            if not g.identity:
                touch = (g.wsum[bad] != 0).any(axis=0) & (f.val[g.x] != 0)
                m.take_back(g.x, touch & f.const[g.x], Kept.OUTPUT)


def _keep_one(graph: Graph, m: _Marks) -> None:
    """A tensor read by anything but a concat or a pool keeps a channel (its lowest)."""
    for x, marks in m.marks.items():
        if not marks.size or not marks.all():
            continue
        if any(not isinstance(u.op, (O.Concat, *_CHANNELWISE)) for u in graph.users[x]):
            first = np.zeros_like(marks)
            first[0] = True
            m.take_back(x, first, Kept.LAST)


def _layer_name(graph: Graph, plane: Node) -> str:
    """The plane's layer as ``bnc inspect`` names it: its first operand that is not an
    identity read (a mask ``conv[m1]`` by its layer ``conv``)."""
    for v in plane.args:
        conv = graph.producer(v).op  # type: ignore[union-attr]
        if not is_identity(conv):
            name = conv.name
            return name[: name.rindex("[m")] if name.endswith("]") and "[m" in name else name
    return plane.op.name


def _info(graph: Graph, f: _Facts, m: _Marks) -> DeadChannelInfo:
    rows = []
    for node in graph.nodes:
        if not isinstance(node.op, _CODES):
            continue
        x = node.out
        removed = tuple((int(j), f.why[x][j] or Why.UNREAD) for j in np.flatnonzero(m.marks[x]))
        kept = tuple(
            (int(j), m.kept[x][j] or Kept.PINNED) for j in np.flatnonzero(f.const[x] & ~m.marks[x])
        )
        if removed or kept:
            rows.append(LayerDeadInfo(_layer_name(graph, node), node.op.name, len(m.marks[x]),
                                      removed, kept))  # fmt: skip
    return DeadChannelInfo(tuple(rows))


def dead_channel_info(graph: Graph) -> DeadChannelInfo:
    """What ``DropDeadChannels`` would remove from ``graph`` (and the constant channels it
    would keep), by plane."""
    f = _forward(graph)
    return _info(graph, f, _fixpoint(graph, f))


_DONE: weakref.WeakKeyDictionary[Graph, DeadChannelInfo] = weakref.WeakKeyDictionary()


def removed_channels(graph: Graph) -> DeadChannelInfo | None:
    """What ``DropDeadChannels`` removed to make ``graph`` (None: the pass did not make it)."""
    return _DONE.get(graph)


@dataclass(frozen=True)
class DropDeadChannels:
    """Remove constant and unread channels (module docstring); a graph with none is returned
    as it is."""

    name: str = "drop-dead-channels"

    def apply(self, graph: Graph) -> Graph:
        f = _forward(graph)
        m = _fixpoint(graph, f)
        info = _info(graph, f, m)
        if not any(v.any() for v in m.marks.values()):
            _DONE.setdefault(graph, info)  # made by this pass already: keep what it removed
            return graph
        out = _rewrite(graph, f, m)
        _DONE[out] = info if out is not graph else DeadChannelInfo(())
        return out


def _rewrite(graph: Graph, f: _Facts, m: _Marks) -> Graph:
    b = Builder(graph)
    keep = {x: ~v for x, v in m.marks.items()}

    def rows_of(sums: str) -> np.ndarray:
        (reader,) = graph.users[sums][:1]
        if len(graph.users[sums]) > 1 or reader.out not in keep:
            return np.ones(graph.types[sums].channels, dtype=bool)
        return keep[reader.out]

    for node in graph.nodes:
        op, out = node.op, node.out
        if out in keep and not keep[out].any():
            continue  # removed entirely (only concatenated)
        if isinstance(op, O.SumConv2d):
            rows, cols = rows_of(out), keep[node.args[0]]
            if not rows.any():
                continue
            if not rows.all() or not cols.all():
                op = O.SumConv2d(op.name, op.weight[rows][:, cols], op.stride, op.padding)
        elif isinstance(op, _PLANES):
            op = _plane_op(op, keep.get(out), _offset_delta(graph, node, f, m))
            if op is None:
                return graph  # a constant would leave int64: keep the graph as it is
        elif isinstance(op, O.BitMaxPool2d) and not keep[out].all():
            op = O.BitMaxPool2d(op.name, op.kernel, op.stride, op.padding,
                                op.and_mask[keep[out]])  # fmt: skip
        elif isinstance(op, O.Concat):
            args = [b.map[a] for a in node.args if keep[a].any()]
            b.map[out] = args[0] if len(args) == 1 else b.emit(op, args)
            continue
        b.map[out] = b.emit(op, tuple(b.map[a] for a in node.args))
    return b.finish()


def _plane_op(op: O.Op, keep: np.ndarray | None, delta: list[int]) -> O.Op | None:
    """``op`` over the kept output channels with ``delta`` added to its constant."""
    if isinstance(op, O.OutputAffine):
        if not any(delta):
            return op
        bias = np.array([float(Fraction(float(b)) + d * Fraction(float(s)))
                         for b, s, d in zip(op.bias, op.scale, delta, strict=True)])  # fmt: skip
        return O.OutputAffine(op.name, op.t, op.s, op.scale, bias)
    assert keep is not None and isinstance(op, _CODES)
    if keep.all() and not any(delta):
        return op
    d = np.array(delta, dtype=object)[keep]
    c = op.c[..., keep].astype(object) + d
    if any(abs(int(v)) >= _INT64 // 2 for v in c.ravel()):
        return None
    c = c.astype(np.int64)
    t, s = op.t[:, keep], op.s[:, keep]
    if isinstance(op, O.Threshold):
        return O.Threshold(op.name, t, s, c)
    if isinstance(op, O.MultiThreshold):
        return O.MultiThreshold(op.name, t, s, c, op.qmin, op.scale, op.zero_point)
    return O.Requantize(op.name, t, s, c, op.shift[keep], op.qmin, op.qmax, op.scale,
                        op.zero_point)  # fmt: skip
