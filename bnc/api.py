"""The Python API of DESIGN §3: ``bnc.compile(model_or_path, example_input, target=...)``."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnc import targets
from bnc.errors import BncError
from bnc.ir import analysis
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.interpreter import dequantize
from bnc.ir.passes import LoweringError, lower
from bnc.report import render_report

MANIFEST = "bnc.json"


def output_op(graph: Graph) -> O.OutputAffine:
    return next(op for op in graph.ops if isinstance(op, O.OutputAffine))


THREADED = ("c", "arm64", "armv7")  # the targets that take threads
MAX_THREADS = 64


@dataclass
class CompiledModel:
    """A lowered model bound to a target. ``save`` writes the artifact folder; ``run`` builds
    it once (in a private folder if it was never saved) and executes it."""

    name: str
    graph: Graph  # import level
    lowered: Graph
    target: str
    schedule: str = "auto"
    fps_target: float | None = None
    clock_mhz: float | None = None
    threads: int = 1
    board: str | None = None
    _folder: Path | None = field(default=None, repr=False)
    view: Any = field(default=None, repr=False)  # the target's view model, after save

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input.shape

    def manifest(self) -> dict[str, Any]:
        out = output_op(self.lowered)
        return {
            "bnc_version": 1,
            "name": self.name,
            "target": self.target,
            **self.options(),
            "input_shape": list(self.graph.input.shape),
            "output_shape": list(self.lowered.output.shape),
            "output_scale": [float(v) for v in out.scale],
            "output_bias": [float(v) for v in out.bias],
        }

    def options(self) -> dict[str, Any]:
        """The target's own options, as its ``emit`` takes them."""
        if self.target == "fpga":
            return {"fps_target": self.fps_target, "clock_mhz": self.clock_mhz,
                    "board": self.board}  # fmt: skip
        if self.target in THREADED:
            return {"schedule": self.schedule, "threads": self.threads}
        return {"schedule": self.schedule}

    def save(self, folder: str | Path) -> Path:
        """Write the artifact into ``folder`` atomically (a temporary sibling, then a rename).

        An existing bnc output folder is replaced; any other existing path is refused.
        """
        dest = Path(folder)
        if dest.exists() and not (dest / MANIFEST).is_file():
            raise BncError(f"{dest}: exists and is not a bnc output folder; choose another -o")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            view = targets.get(self.target).emit(self.lowered, tmp, self.name, **self.options())
            (tmp / "report.md").write_text(render_report(self, view), encoding="utf-8")
            text = json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n"
            (tmp / MANIFEST).write_text(text, encoding="utf-8")
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._folder = dest
        self.view = view
        return dest

    def _ensure_folder(self) -> Path:
        if self._folder is None or not self._folder.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix="bnc-"))
            weakref.finalize(self, shutil.rmtree, tmp, True)
            self.save(tmp / self.name)
        assert self._folder is not None
        return self._folder

    def run_acc(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The integer accumulators (N, outputs) and the runner's stats."""
        return Artifact.open(self._ensure_folder()).run_acc(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float32 outputs (N, outputs), dequantized as in DESIGN §2.8."""
        acc, _ = self.run_acc(x)
        return dequantize_flat(acc, output_op(self.lowered))

    def report(self) -> str:
        return render_report(self)

    def layers(self) -> list[analysis.LayerInfo]:
        return analysis.layer_table(self.lowered)


def dequantize_flat(acc: np.ndarray, out: O.OutputAffine) -> np.ndarray:
    """``dequantize`` for accumulators flattened to (N, C*H*W) in PyTorch order."""
    n = acc.shape[0]
    per = acc.reshape(n, out.scale.shape[0], -1)
    return dequantize(per[..., None], out).reshape(n, -1)


@dataclass(frozen=True)
class Artifact:
    """A compiled folder on disk, as ``bnc run`` and ``bnc report`` see it."""

    folder: Path
    manifest: dict[str, Any]

    @staticmethod
    def open(folder: str | Path) -> Artifact:
        path = Path(folder)
        man = path / MANIFEST
        if not man.is_file():
            raise BncError(
                f"{path}: not a bnc output folder (no {MANIFEST}); make one with 'bnc compile'"
            )
        try:
            data = json.loads(man.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BncError(f"{man}: unreadable manifest ({e})") from None
        return Artifact(path, data)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.manifest["input_shape"])

    def check_input(self, x: np.ndarray, where: str = "input") -> np.ndarray:
        want = self.input_shape
        if x.dtype != np.float32:
            raise BncError(
                f"{where}: dtype {x.dtype}, the model takes float32"
                " (convert with x.astype(np.float32))"
            )
        shape = tuple(x.shape)
        if shape[1:] != want and not (want[1:] == (1, 1) and shape[1:] == want[:1]):
            shown = ",".join(map(str, want))
            raise BncError(f"{where}: shape {shape}, the model takes (N,{shown})")
        if not np.isfinite(x).all():
            raise BncError(f"{where}: contains NaN or infinity; the model takes finite values")
        return np.ascontiguousarray(x.reshape(x.shape[0], *want))

    def run_acc(self, x: np.ndarray, where: str = "input") -> tuple[np.ndarray, dict[str, Any]]:
        x = self.check_input(x, where)
        return targets.get(self.manifest["target"]).run(self.folder, x)

    def dequantize(self, acc: np.ndarray) -> np.ndarray:
        scale = np.asarray(self.manifest["output_scale"], dtype=np.float64)
        bias = np.asarray(self.manifest["output_bias"], dtype=np.float64)
        zeros = np.zeros_like(scale, dtype=np.int64)
        return dequantize_flat(acc, O.OutputAffine("output", zeros, zeros, scale, bias))


def compile(  # noqa: A001 - the name DESIGN §3 fixes
    model: Any,
    example_input: Any = None,
    target: str = "c",
    *,
    input_shape: tuple[int, ...] | None = None,
    trust: bool = False,
    schedule: str = "auto",
    fps_target: float | None = None,
    clock_mhz: float | None = None,
    threads: int = 1,
    board: str | None = None,
) -> CompiledModel:
    """Compile a ``torch.nn.Module`` (with ``example_input``: a tensor or a shape) or a model
    file (path) for ``target``. ``schedule`` picks the binary-convolution kernel: ``auto`` (per
    layer, by cost); C targets ``generic`` or ``planar`` (stride-1 layers), Cortex-M targets
    ``dense``, ``sparse`` or ``sliced`` (stride-1 layers over bits).
    ``fps_target`` and ``clock_mhz`` (default 100) fold the fpga target's engines; ``board``
    (``ulx3s-85f``) adds the board's top, pins and open flow to a bitstream.
    ``threads`` (C targets): the most POSIX threads one inference uses (each layer split across
    output rows or channels; the environment variable BNC_THREADS picks fewer at run time)."""
    from bnc import frontend  # torch is heavy; import on use

    tgt = targets.get(target)
    if (fps_target is not None or clock_mhz is not None or board is not None) and target != "fpga":
        raise BncError("fps_target, clock_mhz and board apply to the fpga target only")
    if board is not None:
        from bnc.backends.fpga import board as boards

        boards.pll(boards.get(board).osc_mhz, 100.0 if clock_mhz is None else clock_mhz)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise BncError(f"threads must be a whole number from 1 to {MAX_THREADS}, not {threads!r}")
    if threads != 1 and target not in THREADED:
        raise BncError(
            f"threads apply to the {', '.join(THREADED)} targets, not '{target}' (one core)"
        )
    if schedule != "auto" and schedule not in tgt.schedules:
        which = ", ".join(tgt.schedules) if tgt.schedules else "auto only"
        raise BncError(
            f"schedule '{schedule}' does not apply to target '{target}'; it takes: {which}"
        )
    if isinstance(model, str | Path):
        imported = frontend.load_model(Path(model), input_shape=input_shape, trust=trust)
    else:
        if example_input is None and input_shape is None:
            raise BncError("compile: pass example_input (a tensor or a shape) with a module")
        example = example_input if example_input is not None else input_shape
        imported = frontend.from_module(model, example)
    try:
        lowered = lower(imported.graph)
        analysis.layer_widths(lowered)
    except (LoweringError, analysis.WidthError) as e:
        raise BncError(f"{imported.name}: {e}") from None
    return CompiledModel(
        imported.name, imported.graph, lowered, target, schedule, fps_target, clock_mhz, threads,
        board,
    )  # fmt: skip
