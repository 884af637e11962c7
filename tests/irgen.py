"""Random import-level graphs for property tests (no PyTorch needed)."""

from __future__ import annotations

import dataclasses

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph, Node
from bnc.ir.types import TensorType, real


def levels(rng: np.random.Generator, o: int) -> tuple[np.ndarray, np.ndarray]:
    """GDQ levels of any sign, per channel or shared, and sometimes the symmetric case."""
    kind = rng.integers(3)
    if kind == 0:
        s = rng.uniform(0.1, 2.0, size=o)
        return -s, s
    n = o if kind == 1 else 1
    a, b = rng.normal(size=n), rng.normal(size=n)
    return np.broadcast_to(a, (o,)).copy(), np.broadcast_to(b, (o,)).copy()


def weights(rng: np.random.Generator, shape: tuple[int, ...], beta_share: float) -> np.ndarray:
    w = rng.random(shape) < beta_share
    if shape[0] > 1 and rng.random() < 0.5:
        w[rng.integers(shape[0])] = False  # an all-zero output channel
    return w


def batch_norm(rng: np.random.Generator, name: str, c: int) -> O.BatchNorm:
    gamma = rng.normal(size=c)
    gamma[rng.random(c) < 0.15] = 0.0
    return O.BatchNorm(
        name,
        gamma,
        rng.normal(size=c),
        rng.normal(scale=3.0, size=c),
        rng.uniform(0.2, 3.0, size=c),
        1e-5,
    )


class _Chain:
    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.input = real(shape)
        self.t: TensorType = self.input
        self.ops: list[O.Op] = []

    def add(self, op: O.Op) -> None:
        self.t = op.infer(self.t)
        self.ops.append(op)


def random_graph(seed: int, max_layers: int = 3) -> Graph:
    """A random chain: input quantizer or sign, conv blocks with every option, a linear head."""
    rng = np.random.default_rng(seed)
    g = _Chain((int(rng.integers(1, 5)), int(rng.integers(5, 13)), int(rng.integers(5, 13))))
    if rng.random() < 0.75:
        signed = bool(rng.random() < 0.3)
        lo, hi = (-128, 127) if signed else (0, 255)
        g.add(O.QuantizeInput("in", 1 / 127 if signed else 1 / 255, lo, hi))
    else:
        g.add(O.Sign("in"))
    sparsity = float(rng.choice([0.0, 0.5, 0.9, 0.95, 0.99]))
    for i in range(int(rng.integers(1, max_layers + 1))):
        c, h, w = g.t.shape
        k = int(rng.choice([1, 3, 5, 7]))
        if k > min(h, w):
            k = 1
        pad = int(rng.integers(0, k // 2 + 1))
        stride = int(rng.integers(1, 3))
        o = int(rng.choice([1, 3, 8, 31, 33, 65]))
        alpha, beta = levels(rng, o)
        bias = rng.normal(size=o) if rng.random() < 0.3 else np.zeros(o)
        wts = weights(rng, (o, c, k, k), 1 - sparsity)
        g.add(O.BinaryConv2d(f"conv{i}", wts, alpha, beta, bias, (stride, stride), (pad, pad)))
        _, h, w = g.t.shape
        pool = h >= 2 and w >= 2 and rng.random() < 0.6
        before = pool and rng.random() < 0.5
        if before:
            g.add(O.MaxPool2d(f"pool{i}", (2, 2), (2, 2)))
        g.add(batch_norm(rng, f"bn{i}", o))
        g.add(O.Sign(f"sign{i}"))
        if pool and not before:
            g.add(O.MaxPool2d(f"pool{i}", (2, 2), (2, 2), (int(rng.integers(0, 2)),) * 2))
    g.add(O.Flatten("flat"))
    classes = int(rng.integers(2, 12))
    alpha, beta = levels(rng, classes)
    g.add(
        O.BinaryLinear(
            "fc",
            weights(rng, (classes, g.t.size), 1 - sparsity),
            alpha,
            beta,
            rng.normal(size=classes),
        )
    )
    if rng.random() < 0.7:
        g.add(batch_norm(rng, "bn_out", classes))
    return Graph.chain(g.input, g.ops)


def random_input(graph: Graph, n: int, seed: int) -> np.ndarray:
    """Float32 inputs that exercise the whole code range (and exact zeros for sign)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(n, *graph.input.shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0
    return x


class _Dag:
    """Builds a graph node by node; values are named ``%0, %1, ...``."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.input = real(shape)
        self.types: dict[str, TensorType] = {INPUT: self.input}
        self.nodes: list[Node] = []

    def add(self, op: O.Op, *args: str) -> str:
        out = f"%{len(self.nodes)}"
        self.types[out] = op.infer(*(self.types[a] for a in args))
        self.nodes.append(Node(op, tuple(args), out))
        return out

    def graph(self, result: str) -> Graph:
        return Graph(self.input, tuple(self.nodes), result)


def _conv(rng: np.random.Generator, name: str, c: int, o: int, k: int, stride: int, pad: int,
          share: float) -> O.BinaryConv2d:  # fmt: skip
    alpha, beta = levels(rng, o)
    bias = rng.normal(size=o) if rng.random() < 0.3 else np.zeros(o)
    w = weights(rng, (o, c, k, k), share)
    return O.BinaryConv2d(name, w, alpha, beta, bias, (stride, stride), (pad, pad))


def random_dag(seed: int, blocks: int | None = None) -> Graph:
    """A random graph of the forms DESIGN §2.8 names: a stem, then blocks drawn from chain
    layers, identity residual blocks (bit shortcut), strided two-branch blocks, concat with
    fan-out (a tensor read by a layer and by the cat), max-pools; a global-average-pool or
    flatten head. Sparsity 0-99 %, gamma of any sign and zero."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(4, 11)), int(rng.integers(4, 11)))
    g = _Dag(shape)
    if rng.random() < 0.75:
        x = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
    else:
        x = g.add(O.Sign("in"), INPUT)
    share = 1 - float(rng.choice([0.0, 0.5, 0.9, 0.95, 0.99]))
    c = int(rng.choice([3, 8, 33]))
    k = 3 if min(shape[1:]) >= 3 else 1
    x = g.add(_conv(rng, "stem", shape[0], c, k, 1, k // 2, share), x)
    x = g.add(O.Sign("stem.sign"), g.add(batch_norm(rng, "stem.bn", c), x))
    n = int(rng.integers(1, 4)) if blocks is None else blocks
    for i in range(n):
        kind = rng.choice(["chain", "identity", "two-branch", "concat", "pool"])
        _, h, w = g.types[x].shape
        p = f"b{i}"
        if kind == "identity":
            y = g.add(batch_norm(rng, f"{p}.bn", c), g.add(_conv(rng, p, c, c, 3, 1, 1, share), x))
            x = g.add(O.Sign(f"{p}.sign"), g.add(O.Add(f"{p}.add"), y, x))
        elif kind == "two-branch" and min(h, w) >= 2:
            o = c + int(rng.integers(1, 9))
            a = g.add(batch_norm(rng, f"{p}.bn", o), g.add(_conv(rng, p, c, o, 3, 2, 1, share), x))
            sc = g.add(_conv(rng, f"{p}.down", c, o, 1, 2, 0, share), x)
            b = g.add(batch_norm(rng, f"{p}.down.bn", o), sc)
            x, c = g.add(O.Sign(f"{p}.sign"), g.add(O.Add(f"{p}.add"), a, b)), o
        elif kind == "concat":
            o = int(rng.integers(1, 12))
            y = g.add(batch_norm(rng, f"{p}.bn", o), g.add(_conv(rng, p, c, o, 3, 1, 1, share), x))
            y = g.add(O.Sign(f"{p}.sign"), y)
            x, c = g.add(O.Concat(f"{p}.cat"), x, y), c + o
        elif kind == "pool" and min(h, w) >= 2:
            x = g.add(O.MaxPool2d(f"{p}.pool", (2, 2), (2, 2)), x)
        else:
            y = g.add(batch_norm(rng, f"{p}.bn", c), g.add(_conv(rng, p, c, c, 3, 1, 1, share), x))
            x = g.add(O.Sign(f"{p}.sign"), y)
    classes = int(rng.integers(2, 11))
    if rng.random() < 0.5:
        x = g.add(O.GlobalAvgPool("gap"), x)
    x = g.add(O.Flatten("flat"), x)
    alpha, beta = levels(rng, classes)
    fc = O.BinaryLinear("fc", weights(rng, (classes, g.types[x].size), share), alpha, beta,
                        rng.normal(size=classes))  # fmt: skip
    x = g.add(fc, x)
    if rng.random() < 0.7:
        x = g.add(batch_norm(rng, "bn_out", classes), x)
    return g.graph(x)


def residual_graph() -> Graph:
    """A fixed graph with every form (golden tests): identity, two-branch, concat, pool, gap."""
    for seed in range(1000):
        g = random_dag(seed, blocks=4)
        names = {type(n.op).__name__ for n in g.nodes}
        if {"Add", "Concat", "GlobalAvgPool"} <= names:
            return g
    raise AssertionError("no seed gives every form")


def real_concat_graph(seed: int) -> Graph:
    """``Sign(BN(cat(conv_a(x), conv_b(x))))``: a concat of real branches (DenseNet-like)."""
    rng = np.random.default_rng(seed)
    g = _Dag((2, 6, 6))
    x = g.add(O.Sign("in"), INPUT)
    a = g.add(_conv(rng, "a", 2, 5, 3, 1, 1, 0.5), x)
    b = g.add(batch_norm(rng, "b.bn", 3), g.add(_conv(rng, "b", 2, 3, 1, 1, 0, 0.5), x))
    y = g.add(O.Sign("sign"), g.add(batch_norm(rng, "bn", 8), g.add(O.Concat("cat"), a, b)))
    alpha, beta = levels(rng, 4)
    fc = O.BinaryLinear("fc", weights(rng, (4, 8 * 36), 0.5), alpha, beta, rng.normal(size=4))
    return g.graph(g.add(fc, g.add(O.Flatten("flat"), y)))


WEIGHT_FORMS = ("gdq", "ternary", "int", "multibit", "codebook")


def quant_conv(rng: np.random.Generator, name: str, c: int, o: int, k: int, stride: int,
               pad: int, share: float, form: str) -> O.Op:  # fmt: skip
    """A layer of one weight form of DESIGN §2.5 with levels of any sign; ``share`` is the
    share of weights away from the most common level (ternary: of nonzero weights)."""
    if form == "gdq":
        return _conv(rng, name, c, o, k, stride, pad, share)
    shape = (o, c, k, k)
    s = rng.uniform(0.05, 2.0, size=o) * rng.choice([-1.0, 1.0], size=o)
    if form == "ternary":
        lv = np.stack([-s, 0 * s, s], axis=1)
        p = [share / 2, 1 - share, share / 2]
    elif form == "int":
        bits = int(rng.integers(2, 5))
        n = np.arange(-(2 ** (bits - 1)) + int(rng.integers(0, 2)), 2 ** (bits - 1))
        lv = s[:, None] * n[None, :].astype(np.float64)
        zero = int(np.flatnonzero(n == 0)[0])
        p = np.full(len(n), share / max(len(n) - 1, 1))
        p[zero] = 1 - share
    elif form == "multibit":
        planes = int(rng.integers(2, 4))
        alpha = rng.uniform(0.05, 1.0, size=(planes, o))
        n = np.arange(2**planes)
        lv = np.stack([sum(alpha[i] * (2 * ((v >> i) & 1) - 1) for i in range(planes)) for v in n],
                      axis=1)  # fmt: skip
        p = np.full(len(n), 1 / len(n))
    else:
        count = int(rng.integers(3, 6))
        lv = rng.normal(size=(o, count))
        p = np.full(count, share / (count - 1))
        p[0] = 1 - share
    index = rng.choice(lv.shape[1], p=np.asarray(p) / np.sum(p), size=shape)
    bias = rng.normal(size=o) if rng.random() < 0.3 else np.zeros(o)
    return O.QuantConv2d(name, index, lv, bias, (stride, stride), (pad, pad))


def input_op(rng: np.random.Generator) -> O.Op:
    """The network input's op: a plain 8-bit quantizer, one over a float32 ``x*2 - 1``
    (QONNX's CNV) with or without a zero point, or a Sign with a threshold (QONNX's TFC)."""
    form = int(rng.integers(0, 4))
    if form == 0:
        return O.QuantizeInput("in", 1 / 255, 0, 255)
    if form == 1:
        return O.QuantizeInput("in", 2**-7, -128, 127, mul=2.0, add=-1.0)
    if form == 2:
        return O.QuantizeInput("in", 1 / 127, 0, 255, zero_point=128, mul=2.0, add=-1.0)
    return O.Sign("in", float(np.float32(rng.uniform(0.2, 0.8))))


def explicit_thresholds(rng: np.random.Generator, op: O.Op, channels: int) -> O.Op:
    """A k-bit quantizer (at most 15 levels), sometimes with explicit thresholds: per channel,
    its uniform ones moved by up to half a step and sorted (FINN's MultiThreshold)."""
    if not isinstance(op, O.Quantize) or op.qmax - op.qmin > 15 or rng.random() < 0.6:
        return op
    levels = op.qmax - op.qmin
    base = op.scale * (op.qmin - op.zero_point + np.arange(1, levels + 1) - 0.5)
    th = base + rng.uniform(-0.5, 0.5, (channels, levels)) * op.scale
    return dataclasses.replace(op, thresholds=np.sort(th, axis=1))


def activation(rng: np.random.Generator, name: str, kind: str) -> O.Op:
    """Sign, or a k-bit quantizer: unsigned / signed / narrow, 1 to 8 bits."""
    if kind == "sign":
        return O.Sign(name)
    bits = int(rng.integers(1, 5)) if kind == "low" else 8
    signed = bits > 1 and rng.random() < 0.4
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if signed and rng.random() < 0.3:
        lo += 1  # narrow range
    return O.Quantize(name, float(rng.uniform(0.05, 1.5) / max(1, hi)), 0, lo, hi)


def multibit_dag(seed: int, blocks: int | None = None) -> Graph:
    """A random graph of DESIGN §2.5–2.8's multi-bit forms: every weight form, Sign or k-bit
    activations, an 8-bit residual stream ``x = q(bn(conv(sign(x))) + x)``, identity adds of
    codes and of bits, max-pools of codes before or after the quantizer; sparsity 0-99 %,
    gamma of any sign and zero. The importers' forms (drawn from a second stream, so the rest
    of the graph is the same): an input quantizer with a float32 ``x*2 - 1`` and a zero
    point, or a Sign with a threshold; quantizers with explicit (non-uniform) thresholds."""
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(seed + 7919)
    shape = (int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10)))
    g = _Dag(shape)
    x = g.add(input_op(extra), INPUT)

    def quantizer(name: str, kind: str) -> O.Op:  # every activation here is over c channels
        return explicit_thresholds(extra, activation(rng, name, kind), c)

    share = 1 - float(rng.choice([0.0, 0.5, 0.9, 0.99]))
    c = int(rng.choice([3, 8, 33]))

    def layer(x: str, p: str, c_in: int, o: int, k: int = 3, stride: int = 1) -> str:
        form = str(rng.choice(WEIGHT_FORMS))
        conv = quant_conv(rng, p, c_in, o, k, stride, k // 2, share, form)
        return g.add(batch_norm(rng, f"{p}.bn", o), g.add(conv, x))

    k = 3 if min(shape[1:]) >= 3 else 1
    x = g.add(quantizer("stem.act", str(rng.choice(["sign", "low"]))),
              layer(x, "stem", shape[0], c, k))  # fmt: skip
    n = int(rng.integers(1, 4)) if blocks is None else blocks
    for i in range(n):
        kind = str(rng.choice(["chain", "stream", "bit-residual", "pool"]))
        _, h, w = g.types[x].shape
        p = f"b{i}"
        if kind == "stream":
            # x8 = q8(x) once, then blocks x8 = q8(bn(conv(sign(x8))) + x8)
            if g.types[x].kind.value != "int" or g.types[x].bits != 8:
                x = g.add(quantizer(f"{p}.in", "wide"), layer(x, f"{p}.in", c, c, 1))
            for j in range(int(rng.integers(1, 3))):
                y = layer(g.add(O.Sign(f"{p}.{j}.sign"), x), f"{p}.{j}", c, c)
                q = g.types[x]
                x = g.add(O.Quantize(f"{p}.{j}.q", q.scale, 0, q.lo, q.hi),
                          g.add(O.Add(f"{p}.{j}.add"), y, x))  # fmt: skip
        elif kind == "bit-residual":
            if g.types[x].kind.value != "bit":
                x = g.add(O.Sign(f"{p}.sign0"), x)
            x = g.add(O.Sign(f"{p}.sign"), g.add(O.Add(f"{p}.add"), layer(x, p, c, c), x))
        elif kind == "pool" and min(h, w) >= 2:
            x = g.add(O.MaxPool2d(f"{p}.pool", (2, 2), (2, 2)), x)
        elif min(h, w) >= 2 and rng.random() < 0.5:  # pool before the quantizer
            y = g.add(O.MaxPool2d(f"{p}.pool", (2, 2), (2, 2)), g.add(quant_conv(
                rng, p, c, c, 3, 1, 1, share, str(rng.choice(WEIGHT_FORMS))), x))  # fmt: skip
            y = g.add(batch_norm(rng, f"{p}.bn", c), y)
            x = g.add(quantizer(f"{p}.act", str(rng.choice(["sign", "low"]))), y)
        else:
            act = str(rng.choice(["sign", "low", "wide"]))
            x = g.add(quantizer(f"{p}.act", act), layer(x, p, c, c))
    classes = int(rng.integers(2, 11))
    if rng.random() < 0.5:
        x = g.add(O.GlobalAvgPool("gap"), x)
    x = g.add(O.Flatten("flat"), x)
    form = str(rng.choice(WEIGHT_FORMS))
    fc = quant_conv(rng, "fc", g.types[x].channels, classes, 1, 1, 0, share, form)
    if isinstance(fc, O.QuantConv2d):
        fc = O.QuantLinear("fc", fc.index[:, :, 0, 0], fc.levels, fc.bias)
    else:
        fc = O.BinaryLinear("fc", fc.weight[:, :, 0, 0], fc.alpha, fc.beta, fc.bias)
    x = g.add(fc, x)
    if rng.random() < 0.7:
        x = g.add(batch_norm(rng, "bn_out", classes), x)
    return g.graph(x)


def multibit_chain(seed: int, blocks: int | None = None) -> Graph:
    """A random chain (no branches) of DESIGN §2.5–2.7's multi-bit forms, what the fpga
    target streams: every weight form, Sign or k-bit activations of up to 4 bits (multi-
    thresholds, explicit or uniform), max-pools of bits or codes before or after the quantizer,
    strides and padding of any kind, sometimes a global average pool before the classifier,
    sparsity 0-99 %, gamma of any sign and zero."""
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(seed + 104729)
    shape = (int(rng.integers(1, 4)), int(rng.integers(4, 11)), int(rng.integers(4, 11)))
    g = _Dag(shape)
    x = g.add(input_op(extra), INPUT)
    share = 1 - float(rng.choice([0.0, 0.5, 0.9, 0.99]))
    c_in = shape[0]

    def act(name: str, c: int) -> O.Op:
        return explicit_thresholds(extra, activation(rng, name, str(rng.choice(["sign", "low"]))),
                                   c)  # fmt: skip

    n = int(rng.integers(1, 4)) if blocks is None else blocks
    for i in range(n + 1):
        _, h, w = g.types[x].shape
        o = int(rng.choice([3, 8, 17]))
        k = int(rng.choice([1, 3])) if min(h, w) >= 3 else 1
        stride = 2 if min(h, w) >= 6 and rng.random() < 0.2 else 1
        pad = k // 2 if rng.random() < 0.6 else 0
        conv = quant_conv(rng, f"l{i}", c_in, o, k, stride, pad, share,
                          str(rng.choice(WEIGHT_FORMS)))  # fmt: skip
        y = g.add(batch_norm(rng, f"l{i}.bn", o), g.add(conv, x))
        _, h, w = g.types[y].shape
        pool = min(h, w) >= 2 and rng.random() < 0.4
        if pool and rng.random() < 0.5:  # before the quantizer
            y = g.add(O.MaxPool2d(f"l{i}.pool", (2, 2), (2, 2)), y)
            pool = False
        x = g.add(act(f"l{i}.act", o), y)
        if pool:
            x = g.add(O.MaxPool2d(f"l{i}.pool", (2, 2), (2, 2)), x)
        c_in = o
    return _head(g, rng, x, share, 0.4, norm=True)


def _head(g: _Dag, rng: np.random.Generator, x: str, share: float, gap: float,
          norm: bool) -> Graph:  # fmt: skip
    """The end of a random network: a global average pool (with probability ``gap``), a
    classifier of any weight form, and (``norm``, with probability 0.7) a BatchNorm."""
    if rng.random() < gap:
        x = g.add(O.GlobalAvgPool("gap"), x)
    x = g.add(O.Flatten("flat"), x)
    classes = int(rng.integers(2, 11))
    fc = quant_conv(rng, "fc", g.types[x].channels, classes, 1, 1, 0, share,
                    str(rng.choice(WEIGHT_FORMS)))  # fmt: skip
    if isinstance(fc, O.QuantConv2d):
        fc = O.QuantLinear("fc", fc.index[:, :, 0, 0], fc.levels, fc.bias)
    else:
        fc = O.BinaryLinear("fc", fc.weight[:, :, 0, 0], fc.alpha, fc.beta, fc.bias)
    x = g.add(fc, x)
    if norm and rng.random() < 0.7:
        x = g.add(batch_norm(rng, "bn_out", classes), x)
    return g.graph(x)


def _act_like(g: _Dag, name: str, y: str, like: TensorType) -> str:
    """``y`` through the activation that made a tensor of type ``like`` (Sign or the same
    quantizer), so a block's output has its input's type."""
    if like.kind.value == "bit":
        return g.add(O.Sign(name), y)
    return g.add(O.Quantize(name, like.scale, like.zero_point, like.lo, like.hi), y)


def multibit_resnet(seed: int, blocks: int | None = None) -> Graph:
    """A random residual network of k-bit activations (up to 4 bits: multi-thresholds) or
    bits: a stem, then blocks of one conv added to its input, two convs added to the block's
    input (a shortcut across two layers), a strided block with a 1x1 downsampling shortcut over
    bits, a concat, a max-pool; every weight form, sparsity 0-99 %, sometimes a global average
    pool before the classifier."""
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(seed + 15485863)
    shape = (int(rng.integers(1, 4)), int(rng.integers(5, 11)), int(rng.integers(5, 11)))
    g = _Dag(shape)
    x = g.add(input_op(extra), INPUT)
    share = 1 - float(rng.choice([0.0, 0.5, 0.9, 0.99]))
    c = int(rng.choice([3, 8, 17]))

    def act(name: str, kind: str) -> O.Op:
        return explicit_thresholds(extra, activation(rng, name, kind), c)

    def layer(x: str, p: str, c_in: int, o: int, k: int = 3, stride: int = 1) -> str:
        conv = quant_conv(rng, p, c_in, o, k, stride, k // 2, share, str(rng.choice(WEIGHT_FORMS)))
        return g.add(batch_norm(rng, f"{p}.bn", o), g.add(conv, x))

    x = g.add(act("stem.act", str(rng.choice(["sign", "low"]))), layer(x, "stem", shape[0], c))
    n = int(rng.integers(1, 4)) if blocks is None else blocks
    for i in range(n):
        kind = str(rng.choice(["one", "two", "down", "concat", "pool"]))
        _, h, w = g.types[x].shape
        p = f"b{i}"
        like = g.types[x]
        bits_in = like.kind.value == "bit"
        form = "sign" if bits_in else "low"
        if kind == "one":
            x = _act_like(g, f"{p}.act", g.add(O.Add(f"{p}.add"), layer(x, p, c, c), x), like)
        elif kind == "two":
            y = g.add(act(f"{p}.act1", str(rng.choice(["sign", "low"]))), layer(x, f"{p}.1", c, c))
            x = _act_like(g, f"{p}.act", g.add(O.Add(f"{p}.add"), layer(y, f"{p}.2", c, c), x),
                          like)  # fmt: skip
        elif kind == "down" and bits_in and min(h, w) >= 2:
            o = c + int(rng.integers(1, 6))
            a = layer(x, p, c, o, 3, 2)
            sc = _conv(rng, f"{p}.down", c, o, 1, 2, 0, share)
            b = g.add(batch_norm(rng, f"{p}.down.bn", o), g.add(sc, x))
            x, c = g.add(O.Sign(f"{p}.sign"), g.add(O.Add(f"{p}.add"), a, b)), o
        elif kind == "concat" and bits_in:
            o = int(rng.integers(1, 9))
            y = g.add(O.Sign(f"{p}.sign"), layer(x, p, c, o))
            x, c = g.add(O.Concat(f"{p}.cat"), x, y), c + o
        elif kind == "pool" and min(h, w) >= 2:
            x = g.add(O.MaxPool2d(f"{p}.pool", (2, 2), (2, 2)), x)
        else:
            x = g.add(act(f"{p}.act", form), layer(x, p, c, c))
    return _head(g, rng, x, share, 0.5, norm=False)
