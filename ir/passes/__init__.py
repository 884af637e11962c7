"""The pass registry and the standard lowering pipeline."""

from __future__ import annotations

from typing import Protocol

from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph
from bnc.ir.passes.dead import DropDeadChannels
from bnc.ir.passes.lowering import (
    DecomposeGdq,
    FanOutError,
    FoldAdd,
    FoldAffine,
    FoldBatchNorm,
    FoldSign,
    LinearToConv,
    LowerMaxPool,
    PushMaxPoolPastThreshold,
    PushThroughConcat,
    QuantizeOutput,
)
from bnc.ir.passes.multibit import DecomposeWeights, FoldQuantize
from bnc.ir.types import Kind


class Pass(Protocol):
    name: str

    def apply(self, graph: Graph) -> Graph: ...


PIPELINE: tuple[Pass, ...] = (
    LinearToConv(),
    PushThroughConcat(),
    PushMaxPoolPastThreshold(),
    LowerMaxPool(),
    DecomposeGdq(),
    DecomposeWeights(),
    FoldAffine(),
    FoldSign(),
    FoldQuantize(),
    QuantizeOutput(),
    DropDeadChannels(),
)
"""``DropDeadChannels`` goes last, where it has the integer planes and their proven ranges."""

REGISTRY: dict[str, Pass] = {p.name: p for p in (*PIPELINE, FoldBatchNorm(), FoldAdd())}


class LoweringError(ValueError):
    """The graph has an op the integer pipeline cannot express."""


_STORE = "bnc does not store real tensors: insert bnc.nn.Sign before it"
_WHY = {
    O.BatchNorm: "a BatchNorm must follow a binary layer (or a residual sum of them) and be"
    " followed by Sign or end the network",
    O.MaxPool2d: "a max-pool on real values must be followed by [BatchNorm] Sign",
    O.Affine: "a binary layer's output must go through [BatchNorm] Sign or an ActQuantizer, or"
    " be the network's output; " + _STORE.replace("before", "after"),
    O.BinaryLinear: "a BinaryLinear needs a vector or a flattened input",
    O.QuantLinear: "a BinaryLinear needs a vector or a flattened input",
    O.Quantize: "an activation quantizer must follow a binary layer, a BatchNorm after one, or"
    " a residual add of them (it cannot quantize bits, codes or the input)",
    O.Add: "an add of real values must be followed by [BatchNorm] Sign or end the network, and"
    " each operand must be a binary layer's output [BatchNorm] or bits",
    O.Concat: "a torch.cat of real values must be followed by [BatchNorm] Sign, or put"
    " bnc.nn.Sign on each branch before the cat",
    O.GlobalAvgPool: "a global average pool of real values cannot be stored: put bnc.nn.Sign"
    " before the pool",
}


def lower(graph: Graph, dead_channels: bool = True) -> Graph:
    """Run the whole pipeline and check that only integer ops remain; ``dead_channels=False``
    keeps the constant and unread channels (tests of the passes before it)."""
    try:
        for p in PIPELINE:
            if dead_channels or not isinstance(p, DropDeadChannels):
                graph = p.apply(graph)
    except FanOutError as e:
        raise LoweringError(str(e)) from None
    for node in graph.nodes:
        op = node.op
        reads_input = INPUT in node.args
        real_in = any(t.kind is Kind.REAL for t in graph.in_types(node))
        boundary = isinstance(op, O.Sign | O.QuantizeInput)
        if (
            not isinstance(op, O.LOWERED_OPS)
            or boundary != reads_input
            or (real_in and not boundary)
        ):
            why = _WHY.get(type(op), "it is only supported as the network's first op")
            if reads_input and not boundary:
                why = "the network must start with bnc.nn.InputQuantizer or bnc.nn.Sign"
            raise LoweringError(f"layer '{op.name}' ({op.opname}) cannot be compiled: {why}")
    if not graph.nodes:
        raise LoweringError(
            "the network must start with bnc.nn.InputQuantizer or bnc.nn.Sign on its input"
        )
    v = graph.result
    while isinstance((p := graph.producer(v)) and p.op, O.Flatten):
        v = p.args[0]
    p = graph.producer(v)
    if p is None or not isinstance(p.op, O.OutputAffine):
        raise LoweringError("the network must end with a binary layer (and optional BatchNorm)")
    return graph
