"""Rewriting a graph by value: the one mechanism every pass uses.

``rewrite(graph, rule)`` walks the nodes in order and builds a new graph. For each node the
rule sees the node and its operands' names *in the new graph*; it returns ``None`` to copy
the node, or the new value that stands for the node's result (after emitting any nodes
with ``Builder.emit``). Nodes the result no longer depends on are dropped, and the new graph
is verified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bnc.ir.graph import INPUT, Graph, Node
from bnc.ir.ops import Op
from bnc.ir.types import TensorType


class Builder:
    def __init__(self, source: Graph) -> None:
        self.source = source
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {INPUT: source.input}
        self.producers: dict[str, Node] = {}
        self.map: dict[str, str] = {INPUT: INPUT}  # source value -> new value

    def emit(self, op: Op, args: Sequence[str]) -> str:
        """Append ``op(*args)`` (new values) and return its result's name."""
        op.check_arity(len(args))
        name = f"v{len(self.nodes)}"
        self.types[name] = op.infer(*(self.types[a] for a in args))
        node = Node(op, tuple(args), name)
        self.nodes.append(node)
        self.producers[name] = node
        return name

    def producer(self, value: str) -> Node | None:
        return self.producers.get(value)

    def finish(self) -> Graph:
        return self.source.replace(self.nodes, self.map[self.source.result])


Rule = Callable[[Builder, Node, tuple[str, ...]], str | None]


def rewrite(graph: Graph, rule: Rule) -> Graph:
    b = Builder(graph)
    for node in graph.nodes:
        args = tuple(b.map[a] for a in node.args)
        out = rule(b, node, args)
        b.map[node.out] = b.emit(node.op, args) if out is None else out
    return b.finish()
