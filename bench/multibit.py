"""Multi-bit rows of ``make bench``: one 28²×128→128 3×3 layer in each weight / activation form
(DESIGN §2.5–2.7), timed alone (``-DBNC_PROFILE``) in one run, against PyTorch fp32 and the
W1A1 twin.

    .venv/bin/python bench/multibit.py      (also part of make bench, bench/run.py)

The measured layer reads the activations of a 1×1 stem and writes the same form; its time is
the layer's own share of each inference (median of runs).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PROFILE, build_host, time_artifact  # noqa: E402
from bnc.ir import ops as O  # noqa: E402
from bnc.ir.graph import Graph  # noqa: E402
from bnc.ir.passes import lower  # noqa: E402
from bnc.ir.types import real  # noqa: E402

C, H = 128, 28
# (label, weight form, share of zero weights, activation bits)
FORMS = [
    ("W1A1", "binary", 0.0, 1),
    ("ternary 50 % zeros, A2", "ternary", 0.5, 2),
    ("ternary 90 % zeros, A2", "ternary", 0.9, 2),
    ("W2A2", "int2", 0.0, 2),
    ("W1A4", "binary", 0.0, 4),
]


def _bn(rng: np.random.Generator, name: str, c: int) -> O.BatchNorm:
    return O.BatchNorm(name, rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c),
                       rng.uniform(0.5, 2, c), 1e-5)  # fmt: skip


def _act(name: str, bits: int) -> O.Op:
    return O.Sign(name) if bits == 1 else O.Quantize(name, 3.0 / 2**bits, 0, 0, 2**bits - 1)


def _weights(rng: np.random.Generator, name: str, form: str, zeros: float, c: int, o: int, k: int,
             pad: int) -> O.Op:  # fmt: skip
    shape = (o, c, k, k)
    s = rng.uniform(0.5, 2.0, size=o)
    if form == "binary":
        index = rng.integers(0, 2, size=shape)
        levels = np.stack([-s, s], axis=1)
    elif form == "ternary":
        index = rng.choice(3, p=[(1 - zeros) / 2, zeros, (1 - zeros) / 2], size=shape)
        levels = np.stack([-s, 0 * s, s], axis=1)
    else:  # dense 2-bit integers
        index = rng.integers(0, 4, size=shape)
        levels = s[:, None] * np.array([-2.0, -1.0, 0.0, 1.0])[None, :]
    return O.QuantConv2d(name, index, levels, np.zeros(o), (1, 1), (pad, pad))


def layer_graph(form: str, zeros: float, bits: int, seed: int = 0) -> Graph:
    """Sign input → 1×1 stem → activation → the measured 3×3 layer → BN → activation → head."""
    rng = np.random.default_rng(seed)
    ops = [
        O.Sign("in"),
        _weights(rng, "stem", "binary", 0.0, C, C, 1, 0),
        _bn(rng, "stem.bn", C),
        _act("stem.act", bits),
        _weights(rng, "conv", form, zeros, C, C, 3, 1),
        _bn(rng, "bn", C),
        _act("act", bits),
        O.Flatten("flat"),
        O.BinaryLinear(
            "fc", rng.random((1, C * H * H)) < 0.5, np.full(1, -1.0), np.ones(1), np.zeros(1)
        ),  # fmt: skip
    ]
    return lower(Graph.chain(real((C, H, H)), ops))


def rows(tmp: Path, t_torch: float) -> list[str]:
    """One row per form: bnc's time of the layer, PyTorch's fp32 conv, and the ratios."""
    x = np.random.default_rng(0).normal(size=(10, C, H, H)).astype(np.float32)
    times = {}
    for label, form, zeros, bits in FORMS:
        print(f"bench: {label}", file=sys.stderr, flush=True)
        folder = build_host(layer_graph(form, zeros, bits), tmp / label.replace(" ", "_"),
                            "auto", PROFILE)  # fmt: skip
        times[label] = time_artifact(folder, x, 7, layer=1)
    base = times["W1A1"]
    out = [
        f"| {H}²×{C}→{C} 3×3 layer | bnc | PyTorch fp32 | × fp32 | time / W1A1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, *_ in FORMS:
        t = times[label]
        out.append(f"| {label} | {t * 1e6:.0f} µs | {t_torch * 1e6:.0f} µs | {t_torch / t:.1f}× |"
                   f" {t / base:.2f} |")  # fmt: skip
    tern, dense = times["ternary 90 % zeros, A2"], times["W2A2"]
    out.append("")
    out.append(f"Targets: ternary at 90 % zeros vs dense 2-bit weights (W2A2): {dense / tern:.2f}×"
               f" faster (target ≥ 2×); W2A2 vs W1A1: {dense / base:.2f}× the time (target"
               " ≤ 4.5×).")  # fmt: skip
    return out


def main() -> None:
    from bench.run import torch_conv

    with tempfile.TemporaryDirectory(prefix="bnc-bench-mb-") as d:
        print("\n".join(rows(Path(d), torch_conv(C, H))))


if __name__ == "__main__":
    main()
