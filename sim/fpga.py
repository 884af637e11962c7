"""Run an FPGA artifact: build its Verilator batch simulator once, stream the batch through
the generated top, read the accumulators back. Stats hold the measured cycles per frame."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bnc import progress
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.interpreter import run_op
from bnc.ir.types import TensorType, real
from bnc.sim import verilator


def build(folder: Path, spec: dict[str, Any]) -> Path:
    """The folder's Verilator batch simulator, built unless it is newer than the sources."""
    exe = folder / spec["simulator"]
    sources = [folder / f for f in (folder / "files.f").read_text().split()]
    if exe.exists() and all(exe.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return exe
    # GNU make cannot build in a path with spaces: build a copy elsewhere, keep the binary.
    with tempfile.TemporaryDirectory(prefix="bnc-verilate-") as tmp:
        spaced = any(c.isspace() for c in str(folder.resolve()))
        where = Path(tmp) / "art" if spaced else folder
        if spaced:
            shutil.copytree(folder, where, ignore=shutil.ignore_patterns("obj"))
        proc = progress.run(
            ["make", "-s", "-C", str(where), f"VERILATOR={verilator.executable()}"],
            f"building the Verilator model of {folder} (once)", env=verilator.env(),
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise BncError(f"{folder}: Verilator build failed: {' | '.join(tail)}")
        if spaced:
            exe.parent.mkdir(exist_ok=True)
            shutil.copy2(where / spec["simulator"], exe)
    return exe


def input_codes(spec: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The first op of the model on the float32 batch, exactly as the interpreter runs it."""
    inp = spec["input"]
    shape = tuple(inp["shape"])
    zp = int(inp.get("zero_point", 0))
    if inp["kind"] == "codes":
        mul, add = float(inp.get("mul", 1.0)), float(inp.get("add", 0.0))
        op: O.Op = O.QuantizeInput(
            "input", float(inp["scale"]), inp["qmin"], inp["qmax"], zp, mul, add
        )
    else:
        op, zp = O.Sign("input", float(inp.get("threshold", 0.0))), 0
    t: TensorType = real(shape)  # type: ignore[arg-type]
    return np.asarray(run_op(op, (x,), (t,)), dtype=np.int64) - zp


def run(folder: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Accumulators (N, outputs) int64 in PyTorch's order and the simulation's stats."""
    from bnc.backends.fpga.emit import pack_codes, unstream

    spec = json.loads((folder / "io.json").read_text(encoding="utf-8"))
    exe = build(folder, spec)
    n = x.shape[0]
    words = pack_codes(input_codes(spec, x), spec)
    with tempfile.TemporaryDirectory(prefix="bnc-fpga-") as tmp:
        xin, yout, stats = Path(tmp) / "x.u32", Path(tmp) / "y.i64", Path(tmp) / "stats.json"
        np.ascontiguousarray(words, dtype="<u4").tofile(xin)
        proc = subprocess.run(
            [str(exe.resolve()), str(n), str(xin), str(yout), str(stats)],
            capture_output=True, text=True, cwd=folder,  # the ROMs load from rtl/*.hex
        )  # fmt: skip
        if proc.returncode != 0:
            raise BncError(f"{exe}: failed ({proc.stderr.strip() or proc.returncode})")
        out = np.fromfile(yout, dtype="<i8").reshape(n, -1)
        info = json.loads(stats.read_text())
    info["target"] = "fpga"
    info["simulated"] = "verilator"
    info["model_cycles_per_sample"] = spec["cycles"]["interval"]
    return unstream(out, spec), info
