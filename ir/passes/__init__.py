"""The pass registry and the standard lowering pipeline."""

from __future__ import annotations

from typing import Protocol

from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.passes.lowering import (
    DecomposeGdq,
    FoldBatchNorm,
    FoldSign,
    LinearToConv,
    LowerMaxPool,
    PushMaxPoolPastThreshold,
    QuantizeOutput,
)


class Pass(Protocol):
    name: str

    def apply(self, graph: Graph) -> Graph: ...


PIPELINE: tuple[Pass, ...] = (
    LinearToConv(),
    PushMaxPoolPastThreshold(),
    LowerMaxPool(),
    DecomposeGdq(),
    FoldBatchNorm(),
    FoldSign(),
    QuantizeOutput(),
)

REGISTRY: dict[str, Pass] = {p.name: p for p in PIPELINE}


class LoweringError(ValueError):
    """The graph has an op the integer pipeline cannot express."""


_WHY = {
    O.BatchNorm: "a BatchNorm must follow a binary layer and be followed by Sign or end the net",
    O.MaxPool2d: "a max-pool on real values must be followed by [BatchNorm] Sign",
    O.Affine: "a binary layer's output must go through [BatchNorm] Sign, or be the last layer",
    O.BinaryLinear: "a BinaryLinear needs a vector or a flattened input",
}


def lower(graph: Graph) -> Graph:
    """Run the whole pipeline and check that only integer ops remain."""
    for p in PIPELINE:
        graph = p.apply(graph)
    for i, op in enumerate(graph.ops):
        if not isinstance(op, O.LOWERED_OPS) or (
            isinstance(op, O.Sign | O.QuantizeInput) and i != 0
        ):
            why = _WHY.get(type(op), "it is only supported as the network's first op")
            raise LoweringError(f"layer '{op.name}' ({op.opname}) cannot be compiled: {why}")
    if not graph.ops or not isinstance(graph.ops[0], O.QuantizeInput | O.Sign):
        raise LoweringError(
            "the network must start with bnc.nn.InputQuantizer or bnc.nn.Sign on its input"
        )
    if not any(isinstance(op, O.OutputAffine) for op in graph.ops):
        raise LoweringError("the network must end with a binary layer (and optional BatchNorm)")
    return graph
