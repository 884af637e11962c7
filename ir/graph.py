"""The graph: a typed input and a chain of ops, each feeding the next.

Binary networks as bnc compiles them today are chains; the container is kept minimal so that
passes stay simple pattern rewrites over a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnc.ir.ops import Op
from bnc.ir.types import Kind, TensorType


@dataclass(frozen=True)
class Graph:
    input: TensorType
    ops: tuple[Op, ...]

    def types(self) -> list[TensorType]:
        """The type after each op (``types()[i]`` is what ``ops[i]`` returns)."""
        out: list[TensorType] = []
        t = self.input
        for op in self.ops:
            t = op.infer(t)
            out.append(t)
        return out

    def input_types(self) -> list[TensorType]:
        return [self.input, *self.types()[:-1]]

    @property
    def output(self) -> TensorType:
        return self.types()[-1] if self.ops else self.input

    def verify(self) -> None:
        """Raise ``ShapeError`` if any op does not accept what the op before it returns."""
        if self.input.kind is not Kind.REAL:
            raise ValueError(f"graph input must be real, not {self.input}")
        self.types()

    def replace(self, ops: list[Op] | tuple[Op, ...]) -> Graph:
        g = Graph(self.input, tuple(ops))
        g.verify()
        return g
