"""Training layers whose numerics the compiler reproduces exactly (DESIGN §2.3)."""

from bnc.nn.graph import Concat, Graph, Residual
from bnc.nn.layers import BinaryConv2d, BinaryLinear
from bnc.nn.quant import (
    GDQ,
    ActQuantizer,
    CodebookQuantizer,
    InputQuantizer,
    IntQuantizer,
    MultiBitQuantizer,
    Sign,
    SymmetricQuantizer,
    TernaryQuantizer,
)
from bnc.nn.sparsity import (
    SparsityRegularizer,
    SparsitySchedule,
    beta_share,
    binary_layers,
    clamp_latent_,
)

__all__ = [
    "GDQ",
    "ActQuantizer",
    "BinaryConv2d",
    "BinaryLinear",
    "CodebookQuantizer",
    "Concat",
    "Graph",
    "InputQuantizer",
    "IntQuantizer",
    "MultiBitQuantizer",
    "Residual",
    "Sign",
    "SparsityRegularizer",
    "SparsitySchedule",
    "SymmetricQuantizer",
    "TernaryQuantizer",
    "beta_share",
    "binary_layers",
    "clamp_latent_",
]
