"""The graph: SSA values and the ops that define them, in topological order.

A value is named by a string; the graph's input is ``INPUT``, every other value is the
result of exactly one ``Node`` (an op applied to named operands). Nodes are kept in
topological order (operands before users), so a walk in order is a valid schedule. Passes
rewrite by value (``bnc.ir.rewrite.Builder``), never by position; ``verify`` runs between
passes. ``Graph.chain`` builds the v1 form, each op reading the one before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from bnc.ir.ops import Op
from bnc.ir.types import Kind, TensorType

INPUT = "%in"


class GraphError(ValueError):
    """The graph is not well formed: an undefined or twice-defined value, a dead node."""


@dataclass(frozen=True, slots=True)
class Node:
    """``out = op(*args)``: one op applied to the values named by ``args``."""

    op: Op
    args: tuple[str, ...]
    out: str

    def __str__(self) -> str:
        return f"{self.out} = {self.op.opname} '{self.op.name}'({', '.join(self.args)})"


@dataclass(frozen=True)
class Graph:
    input: TensorType
    nodes: tuple[Node, ...]
    result: str  # the value the network returns

    @staticmethod
    def chain(input: TensorType, ops: Sequence[Op]) -> Graph:
        """Each op reads the value of the op before it (the first reads the input)."""
        nodes, prev = [], INPUT
        for i, op in enumerate(ops):
            nodes.append(Node(op, (prev,), f"%{i}"))
            prev = f"%{i}"
        return Graph(input, tuple(nodes), prev)

    # --- queries ------------------------------------------------------------------------

    @property
    def ops(self) -> tuple[Op, ...]:
        return tuple(n.op for n in self.nodes)

    @cached_property
    def types(self) -> dict[str, TensorType]:
        """Every value's type (operands are checked by each op's ``infer``)."""
        out = {INPUT: self.input}
        for node in self.nodes:
            for a in node.args:
                if a not in out:
                    raise GraphError(f"layer '{node.op.name}': operand {a} is not defined before")
            if node.out in out:
                raise GraphError(f"value {node.out} is defined twice")
            node.op.check_arity(len(node.args))
            out[node.out] = node.op.infer(*(out[a] for a in node.args))
        return out

    @cached_property
    def producers(self) -> dict[str, Node]:
        return {n.out: n for n in self.nodes}

    @cached_property
    def users(self) -> dict[str, tuple[Node, ...]]:
        """For every value, the nodes that read it (once per node, in order)."""
        out: dict[str, list[Node]] = {INPUT: [], **{n.out: [] for n in self.nodes}}
        for n in self.nodes:
            for a in dict.fromkeys(n.args):
                out[a].append(n)
        return {k: tuple(v) for k, v in out.items()}

    def producer(self, value: str) -> Node | None:
        return self.producers.get(value)

    def in_types(self, node: Node) -> tuple[TensorType, ...]:
        return tuple(self.types[a] for a in node.args)

    @property
    def output(self) -> TensorType:
        return self.types[self.result]

    def verify(self) -> None:
        """Raise ``GraphError`` / ``ShapeError`` unless every value is defined once before its
        use, every op accepts its operands, the input is real and every node is live."""
        if self.input.kind is not Kind.REAL:
            raise GraphError(f"graph input must be real, not {self.input}")
        types = self.types
        if self.result not in types:
            raise GraphError(f"the graph's result {self.result} is not defined")
        live = self.live()
        for n in self.nodes:
            if n.out not in live:
                raise GraphError(f"layer '{n.op.name}' ({n.op.opname}): its result is unused")

    def live(self) -> set[str]:
        """Values the result depends on (the input included)."""
        seen = {self.result}
        for n in reversed(self.nodes):
            if n.out in seen:
                seen.update(n.args)
        return seen

    def pruned(self) -> Graph:
        """The graph without nodes the result does not depend on."""
        live = self.live()
        return Graph(self.input, tuple(n for n in self.nodes if n.out in live), self.result)

    def canonical(self) -> Graph:
        """Values renamed ``%0, %1, ...`` in node order (deterministic printing)."""
        names = {INPUT: INPUT}
        nodes = []
        for i, n in enumerate(self.nodes):
            names[n.out] = f"%{i}"
            nodes.append(Node(n.op, tuple(names[a] for a in n.args), f"%{i}"))
        return Graph(self.input, tuple(nodes), names[self.result])

    def replace(self, nodes: Iterable[Node], result: str | None = None) -> Graph:
        """A new graph over ``nodes`` (dead ones dropped, values renumbered), verified."""
        g = Graph(self.input, tuple(nodes), self.result if result is None else result)
        g = g.pruned().canonical()
        g.verify()
        return g
