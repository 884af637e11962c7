"""Value types of the IR. Every tensor is (C, H, W); a vector is (C, 1, 1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """What the elements of a tensor are."""

    REAL = "real"  # a real number (import-level ops, before lowering; float64 in the interpreter)
    INT = "int"  # an integer code q standing for scale * (q - zero_point) (DESIGN §2.4)
    BIT = "bit"  # one bit a standing for 2a - 1
    SUMS = "sums"  # the pair (T, S) of DESIGN §2.4: T (1, H, W) shared, S (C, H, W)
    ACC = "acc"  # the network output's integer accumulator


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor's kind and shape; for INT codes their scale, zero point and range ``[lo, hi]``
    (the codes a quantizer can produce, used by the width proofs and to pick storage)."""

    kind: Kind
    shape: tuple[int, int, int]
    scale: float = 1.0
    lo: int = -1
    hi: int = 1
    zero_point: int = 0

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(not isinstance(d, int) or d < 1 for d in self.shape):
            raise ValueError(f"shape must be three positive integers (C, H, W), not {self.shape!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, not {self.scale!r}")
        if self.lo > self.hi:
            raise ValueError(f"value range [{self.lo}, {self.hi}] is empty")

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        c, h, w = self.shape
        return c * h * w

    @property
    def magnitude(self) -> int:
        """Largest |value| an element stands for, in units of ``scale`` (BIT: 1)."""
        return max(abs(self.lo - self.zero_point), abs(self.hi - self.zero_point))

    @property
    def value_range(self) -> tuple[int, int]:
        """The range of ``q - zero_point`` (BIT: of ``2a - 1``)."""
        if self.kind is Kind.BIT:
            return -1, 1
        return self.lo - self.zero_point, self.hi - self.zero_point

    @property
    def bits(self) -> int:
        """Bits of one code: those of ``hi - lo`` (BIT: 1)."""
        return 1 if self.kind is Kind.BIT else max(1, (self.hi - self.lo).bit_length())

    def __str__(self) -> str:
        c, h, w = self.shape
        zp = f"-{self.zero_point}" if self.zero_point else ""
        extra = f" q[{self.lo},{self.hi}]{zp}*{self.scale!r}" if self.kind is Kind.INT else ""
        return f"{self.kind.value}<{c}x{h}x{w}>{extra}"


def real(shape: tuple[int, int, int]) -> TensorType:
    return TensorType(Kind.REAL, shape)


def bits(shape: tuple[int, int, int]) -> TensorType:
    return TensorType(Kind.BIT, shape)
