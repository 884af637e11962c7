"""bnc: a deployment compiler for binarized, low-bit and pruned neural networks."""

__version__ = "0.1.0"
