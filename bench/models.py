"""Whole-model rows of ``make bench``: the bundled FashionMNIST example, the residual example and
FINN's CNV topology (95 % alpha), compiled for ``c`` with ``--threads 2``, run with
``BNC_THREADS`` 1 and 2, against their fp32 twins in PyTorch with 1 and 2 threads; and each
model's layers, measured alone (``-DBNC_PROFILE``) beside the cost model's prediction.

    .venv/bin/python bench/models.py        (also part of make bench, bench/run.py)

Runs alternate between the settings (1, 2, 1, 2, ...) and the medians are quoted: the machine
is shared and its speed drifts by tens of percent within minutes.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnc  # noqa: E402
import bnc.nn as bn  # noqa: E402
from bench.cnv import cnv  # noqa: E402
from bench.common import PROFILE  # noqa: E402
from bnc.backends.c.lower import (  # noqa: E402
    AltView,
    CodePlanarView,
    ConvView,
    PlanarView,
    layer_cost,
    steps_of,
)
from bnc.backends.c.lower import lower as c_lower  # noqa: E402
from bnc.backends.c.toolchain import HOST, build  # noqa: E402

RUNS = 7


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def float_twin(model: nn.Module) -> nn.Module:
    """The same module tree in float: Conv2d / Linear for the binary layers, ReLU for Sign, no
    input quantizer."""
    twin = copy.deepcopy(model)

    def swap(mod: nn.Module) -> None:
        for name, child in mod.named_children():
            if isinstance(child, bn.BinaryConv2d):
                new: nn.Module = nn.Conv2d(
                    child.in_channels, child.out_channels, child.kernel_size, child.stride,
                    child.padding, bias=child.bias is not None,
                )  # fmt: skip
            elif isinstance(child, bn.BinaryLinear):
                new = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            elif isinstance(child, bn.Sign):
                new = nn.ReLU()
            elif isinstance(child, bn.InputQuantizer):
                new = nn.Identity()
            else:
                swap(child)
                continue
            setattr(mod, name, new)

    swap(twin)
    return twin.eval()


def torch_time(model: nn.Module, x: np.ndarray, threads: int) -> float:
    """Median seconds per image, one image at a time."""
    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)
    ts = []
    with torch.no_grad():
        for i in range(10):
            model(xt[i : i + 1])
        for i in range(200):
            t0 = time.perf_counter()
            model(xt[i % len(xt) : i % len(xt) + 1])
            ts.append(time.perf_counter() - t0)
    torch.set_num_threads(1)
    return statistics.median(ts)


def _run(folder: Path, xin: Path, threads: int, tmp: Path) -> dict:
    st = tmp / "s.json"
    env = {**os.environ, "BNC_THREADS": str(threads)}
    exe = folder / "build" / "model"
    subprocess.run([str(exe), str(xin), str(tmp / "y.i64"), str(st)], check=True, env=env)
    return json.loads(st.read_text())


def bnc_times(folder: Path, x: np.ndarray, tmp: Path) -> dict[int, float]:
    """Median seconds per image with 1 and with 2 threads, runs alternating."""
    xin = tmp / "x.f32"
    x.astype("<f4").tofile(xin)
    got: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(RUNS):
        for n in (1, 2):
            got[n].append(_run(folder, xin, n, tmp)["seconds_per_sample"])
    return {n: statistics.median(v) for n, v in got.items()}


def layer_rows(name: str, compiled, folder: Path, x: np.ndarray, isa: str, top: float, tmp: Path):
    """Each layer: its schedule, dense-equivalent binary MACs, the model's prediction (conv
    layers over bits), the time measured alone, the rate and its share of the peak."""
    build(folder, HOST, PROFILE)
    xin = tmp / "x.f32"
    x.astype("<f4").tofile(xin)
    runs = [_run(folder, xin, 1, tmp)["layer_seconds_per_sample"] for _ in range(RUNS)]
    measured = [statistics.median(r[i] for r in runs) for i in range(len(runs[0]))]
    view = c_lower(compiled.lowered, "m")
    steps = {s.index: s for s in steps_of(compiled.lowered)}
    rows = []
    for v, t in zip(view.layers, measured, strict=True):
        w = (
            v.a
            if isinstance(v, AltView) and isa == "avx512"
            else v.b
            if isinstance(v, AltView)
            else v
        )
        if not isinstance(w, ConvView | PlanarView | CodePlanarView):
            continue
        step = steps[w.index]
        g = step.geo
        bits = (
            step.src.planes
            if step.packed_in
            else max(1, int(step.src.hi - step.src.lo).bit_length())
        )
        macs = g.oh * g.ow * g.o * g.c * g.kh * g.kw * len(step.masks) * bits
        sched = {ConvView: "generic", PlanarView: "planar", CodePlanarView: "code-planar"}[type(w)]
        sched = "code-dot" if isinstance(w, ConvView) and w.input == "dot" else sched
        pred = layer_cost(step, sched, isa)
        rate = macs / t
        rows.append(
            f"| {name} | {w.name} | {sched} | {macs / 1e6:.1f} M |"
            f" {'—' if pred is None else f'{pred * 1e6:.0f} µs'} | {t * 1e6:.1f} µs |"
            f" {rate / 1e9:.0f} G | {100 * rate / top:.0f} % |"
        )
    return rows


def models(tmp: Path) -> list[tuple[str, object, np.ndarray]]:
    data = np.load(ROOT / "examples" / "fashion_test.npz")
    fx = (data["images"][:500].astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    cx = np.random.default_rng(0).uniform(0, 1, size=(200, 3, 32, 32)).astype(np.float32)
    net = cnv(0.95)
    torch.save(net, tmp / "cnv.pt")
    return [
        ("bundled (fashion_bnn.pt)", torch.load(ROOT / "examples" / "fashion_bnn.pt",
                                                weights_only=False), fx),
        ("residual (fashion_resnet.pt)", torch.load(ROOT / "examples" / "fashion_resnet.pt",
                                                    weights_only=False), fx),
        ("FINN CNV, 95 % α", net, cx),
    ]  # fmt: skip


def rows(tmp: Path, top: float) -> tuple[list[str], list[str]]:
    """The whole-model table and the per-layer table."""
    cpu = Path("/proc/cpuinfo").read_text()
    isa = "avx512" if " avx512_vpopcntdq" in cpu else "avx2"
    whole = [
        "| model | fp32 twin, 1 thread | 2 threads | bnc `c`, 1 thread | 2 threads |"
        " × twin (1 thread) | × twin (2 threads) | bnc 2 threads / 1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    per_layer = [
        f"Cost-model path: {isa}. Dense-equivalent binary MACs: H·W·O·C·k² per mask and input"
        " bit (an 8-bit code layer counts 8).",
        "",
        "| model | layer | schedule | work | predicted | measured | rate | % of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (name, model, x) in enumerate(models(tmp)):
        say(f"bench: {name}")
        model = model.eval()
        twin = float_twin(model)
        t1, t2 = torch_time(twin, x, 1), torch_time(twin, x, 2)
        compiled = bnc.compile(model, tuple(x.shape[1:]), threads=2)
        folder = compiled.save(tmp / f"model{i}")
        build(folder, HOST)
        b = bnc_times(folder, x, tmp)
        whole.append(
            f"| {name} | {t1 * 1e6:.0f} µs | {t2 * 1e6:.0f} µs | {b[1] * 1e6:.0f} µs |"
            f" {b[2] * 1e6:.0f} µs | {t1 / b[1]:.1f}× | {t2 / b[2]:.1f}× | {b[1] / b[2]:.2f}× |"
        )
        per_layer += layer_rows(name, compiled, folder, x, isa, top, tmp)
    return whole, per_layer


def main() -> None:
    from bench.run import peak

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bnc-bench-") as d:
        top = max(v for k, v in peak(Path(d)).items() if k.startswith("xor_popcnt"))
        whole, per_layer = rows(Path(d), top)
    print("\n".join([*whole, "", *per_layer]))


if __name__ == "__main__":
    main()
