"""The ``bnc`` command line (DESIGN §3). Every user error is one line and exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnc import __version__, targets
from bnc.errors import BncError

EXIT_USAGE = 2


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise BncError(f"{path}: no such file ({what})")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise BncError(f"{path}: not a readable .npy array ({e}); save one with np.save") from None
    if not isinstance(arr, np.ndarray):
        raise BncError(f"{path}: holds several arrays (.npz); pass one .npy array")
    return arr


def _write_atomic(path: str, write: Any) -> None:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    from bnc.frontend import parse_input_shape

    return parse_input_shape(text)


_UNITS = {"": 1, "k": 1000, "m": 1000**2, "kib": 1024, "mib": 1024**2}


def _bytes(text: str) -> int:
    """``--budget``: bytes as an integer, or with k / M (x1000) or KiB / MiB (x1024)."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    num = t.rstrip("kmib")
    try:
        value = float(num) * _UNITS[t[len(num) :]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a byte count (e.g. 350000, 350k, 1.5M or 512KiB)"
        ) from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes")
    return int(value)


def cmd_compile(a: argparse.Namespace) -> int:
    import bnc

    if (a.fps_target is not None or a.clock_mhz is not None or a.board is not None) and (
        a.target != "fpga"
    ):
        raise BncError("--fps-target, --clock-mhz and --board apply to --target fpga only")
    targets.get(a.target)
    model = Path(a.model)
    out = Path(a.output) if a.output else Path(f"{model.stem}-{a.target}")
    t0 = time.perf_counter()
    _say(f"bnc: importing {model}")
    compiled = bnc.compile(
        model,
        target=a.target,
        input_shape=_input_shape(a.input_shape),
        trust=a.trust,
        schedule=a.schedule,
        fps_target=a.fps_target,
        clock_mhz=a.clock_mhz,
        threads=a.threads,
        board=a.board,
    )
    if a.dump_ir:
        from bnc.ir.printer import dump

        print(dump(compiled.lowered), end="")
    _say(f"bnc: lowered {len(compiled.lowered.ops)} ops; emitting {a.target} code to {out}/")
    compiled.save(out)
    view = compiled.view
    if a.target == "fpga" and view is not None:
        stage, cycles = max(view.stage_cycles(), key=lambda sc: sc[1])
        _say(f"bnc: {view.interval:,} cycles per frame, {view.fps:,.0f} frames/s at"
             f" {view.clock_mhz:g} MHz (slowest stage: {stage})")  # fmt: skip
        if view.fps_target is not None and view.fps < view.fps_target:
            _say(f"bnc: warning: --fps-target {view.fps_target:g} is out of reach: {stage}"
                 f" needs {cycles:,} cycles per frame even unfolded")  # fmt: skip
    if a.target.startswith("cortex-m") and view is not None:
        scheds = ", ".join(
            f"{v.name}: {v.schedule}" for v in view.layers if v.kind in ("conv", "codes")
        )
        _say(f"bnc: {view.weight_bytes:,} bytes of constants (flash), {view.arena.sram:,} bytes of"
             f" activations (SRAM); schedules {scheds}")  # fmt: skip
    _say(f"bnc: done in {time.perf_counter() - t0:.1f} s: {out}/")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from bnc.api import Artifact

    art = Artifact.open(a.out)
    x = _load_npy(a.input, "--input")
    labels = _load_npy(a.labels, "--labels") if a.labels else None
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != x.shape[0]):
        raise BncError(f"{a.labels}: shape {labels.shape}, expected ({x.shape[0]},) class indices")
    _say(f"bnc: running {x.shape[0]} samples on target {art.manifest['target']}")
    acc, stats = art.run_acc(x, where=a.input)
    y = art.dequantize(acc)
    if a.output:

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, y)

        _write_atomic(a.output, save)
    if a.stats:
        text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
        _write_atomic(a.stats, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    per = stats.get("seconds_per_sample")
    line = f"{y.shape[0]} samples"
    if "cycles_per_sample" in stats:
        line += (
            f", {stats['cycles_per_sample']:,.0f} cycles per frame"
            f" ({per * 1e6:.1f} us at {stats['clock_mhz']:g} MHz; simulated by Verilator)"
        )
    elif "instructions_per_sample" in stats:
        line += (
            f", {stats['instructions_per_sample']:,.0f} instructions per inference"
            f" (median; counted by {stats['emulated']} -icount)"
        )
    elif per is not None:
        line += f", {per * 1e6:.1f} us per sample"
        if "emulated" in stats:
            line += f" (emulated by {stats['emulated']}, not the board's speed)"
    if labels is not None:
        acc_pct = 100.0 * float((y.argmax(axis=1) == labels).mean())
        line += f", accuracy {acc_pct:.2f} %"
    print(line)
    if not a.output:
        print(
            "predicted classes:",
            " ".join(map(str, y.argmax(axis=1)[:20])),
            "..." if y.shape[0] > 20 else "",
        )
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    import bnc
    from bnc.report import inspect_text

    compiled = bnc.compile(Path(a.model), input_shape=_input_shape(a.input_shape), trust=a.trust)
    print(f"{a.model}: input {','.join(map(str, compiled.input_shape))}")
    print(inspect_text(compiled.lowered), end="")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from bnc.api import Artifact

    art = Artifact.open(a.out)
    rep = art.folder / "report.md"
    if not rep.is_file():
        raise BncError(f"{rep}: missing; recompile with 'bnc compile'")
    print(rep.read_text(encoding="utf-8"), end="")
    if art.manifest["target"] == "fpga" and not a.no_synth:
        from bnc.backends.fpga.report import board_section, resources_section

        print(resources_section(art.folder), end="")
        print(board_section(art.folder), end="")
    if art.manifest["target"].startswith("cortex-m"):
        from bnc.backends.mcu.report import sizes_section

        print(sizes_section(art.folder), end="")
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from bnc.quantization.api import quantize

    out = Path(a.output)
    if out.suffix.lower() in (".onnx", ".pt2") or out.is_dir():
        raise BncError(f"-o {a.output}: the quantized model is a torch.save file; name it .pt")
    t0 = time.perf_counter()
    q = quantize(
        a.model,
        a.calibration,
        weights=a.weights,
        activations=a.activations,
        method=a.method,
        importance=a.importance,
        codebook=a.codebook,
        calibrate=a.calibrate,
        input_bits=a.input_bits,
        batch_norm=not a.keep_bn_stats,
        finetune=a.finetune,
        prune=a.prune,
        budget=a.budget,
        epochs=a.epochs,
        lr=a.lr,
        output=out,
        trust=a.trust,
        say=lambda s: _say(f"bnc: {s}"),
    )
    for r in q.layers:
        print(f"{r.name:>24}  {r.kind:<11}  {r.detail}")
    _say(f"bnc: done in {time.perf_counter() - t0:.1f} s: {out} (compile it with"
         f" 'bnc compile {out}')")  # fmt: skip
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bnc",
        description="Compile binarized / sparse neural networks to integer-only code.",
    )
    p.add_argument("--version", action="version", version=f"bnc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compile",
        help="compile a model to a target folder",
        description="Compile a model to a target folder. Models: bnc.nn layers (BinaryConv2d,"
        " BinaryLinear, InputQuantizer, Sign) with BatchNorm, max-pools and global average"
        " pools, as a chain or a graph (residual +, torch.cat, bnc.nn.Residual / Concat,"
        " fan-out); or a QONNX .onnx file (Quant, BipolarQuant, MultiThreshold; FINN's"
        " bnn_pynq TFC/SFC/LFC/CNV in W1A1, W1A2 and W2A2 and residual models are tested,"
        " exported by Brevitas 0.13.4 with onnx 1.17 and qonnx 1.0; a live Brevitas module"
        " goes through bnc.compile(module, shape)). The fpga target streams chains only.",
    )
    c.add_argument(
        "model",
        help="torch.save module, TorchScript archive, torch.export program or QONNX .onnx file",
    )
    c.add_argument(
        "--target",
        default="c",
        metavar="|".join(targets.names()),
        help="what to generate (default: c, runs on this machine)",
    )
    c.add_argument("-o", "--output", help="output folder (default: MODEL-TARGET)")
    c.add_argument("--input-shape", help="C,H,W when the file does not record it, e.g. 1,28,28")
    c.add_argument(
        "--trust",
        action="store_true",
        help="load pickles with classes outside the allow-list (trusted files only)",
    )
    c.add_argument("--dump-ir", action="store_true", help="print the lowered IR")
    c.add_argument(
        "--schedule",
        choices=("auto", "generic", "planar", "dense", "sparse", "sliced"),
        default="auto",
        help="binary-convolution kernel per layer (default auto: the cheaper by the cost"
        " model); C targets: generic or planar (stride 1); cortex-m: dense, sparse or sliced"
        " (stride 1)",
    )
    c.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="c, arm64, armv7: split each layer across N POSIX threads (default 1: none);"
        " BNC_THREADS=K picks K <= N when the model runs",
    )
    c.add_argument("--fps-target", type=float, help="fpga: frames per second to fold for")
    c.add_argument("--clock-mhz", type=float, help="fpga: clock in MHz (default 100)")
    c.add_argument(
        "--board",
        help="fpga: add a board's top, pins and open flow to a bitstream (ulx3s-85f: Lattice"
        " ECP5 LFE5U-85F; make bitstream in the output folder, or bnc report)",
    )
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled folder on a batch of inputs")
    r.add_argument("out", help="a folder made by 'bnc compile'")
    r.add_argument("--input", required=True, help="X.npy, float32 (N, C, H, W)")
    r.add_argument("--output", help="Y.npy to write, float32 (N, classes)")
    r.add_argument(
        "--stats",
        help="S.json to write: samples, seconds_per_sample (cortex-m: instructions per"
        " inference and per layer, counted by qemu)",
    )
    r.add_argument("--labels", help="L.npy of class indices: print the accuracy")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", help="per-layer shapes, bits, sparsity, kernel classes, ops")
    i.add_argument("model")
    i.add_argument("--input-shape", help="C,H,W when the file does not record it")
    i.add_argument("--trust", action="store_true", help="as for compile")
    i.set_defaults(func=cmd_inspect)

    rp = sub.add_parser(
        "report",
        help="what a compiled folder holds: memory, ops, sparsity; fpga: cycles, LUTs;"
        " cortex-m: flash and SRAM (arm-none-eabi-size)",
    )
    rp.add_argument("out")
    rp.add_argument(
        "--no-synth",
        action="store_true",
        help="fpga: skip the yosys resource estimate (and the board's place and route)",
    )
    rp.set_defaults(func=cmd_report)

    q = sub.add_parser(
        "quantize",
        help="a float PyTorch model -> a low-bit bnc.nn model that 'bnc compile' takes",
        description="Quantize a float model (torch.nn Conv2d, Linear, BatchNorm, ReLU, max-"
        "pools, global average pools, flatten and residual +; saved with torch.save, as"
        " TorchScript or as a torch.export program): each Conv2d/Linear gets low-bit weights,"
        " each ReLU a k-bit unsigned activation quantizer calibrated on the samples, the input"
        " an 8-bit quantizer. Writes a torch.save'd bnc.nn model.",
    )
    q.add_argument("model", help="float model: torch.save module, TorchScript or torch.export")
    q.add_argument("--weights", type=int, required=True, metavar="K", help="weight bits, 1-8")
    q.add_argument(
        "--activations", type=int, default=8, metavar="K", help="activation bits, 1-8 (default 8)"
    )
    q.add_argument(
        "--calibration",
        required=True,
        metavar="X.npy",
        help="float32 samples (N, C, H, W) as the model takes them; 256-2,000 are plenty",
    )
    q.add_argument("-o", "--output", required=True, metavar="Q.pt", help="the model to write")
    q.add_argument(
        "--method",
        default="amq",
        metavar="amq|refined|greedy|kmeans|int|ternary",
        help="weights: amq (alternating multi-bit, default), refined or greedy binary planes,"
        " kmeans (2^K shared levels), int (uniform k-bit), ternary (--weights 2)",
    )
    q.add_argument(
        "--importance",
        metavar="magnitude|hessian",
        help="weight the weights' fit by |w| (large weights reproduced better) or by the"
        " Hessian diagonal of the layer's output error (its inputs' mean squares on the"
        " calibration samples)",
    )
    q.add_argument(
        "--codebook",
        type=int,
        metavar="K",
        help="k-means weight sharing: K levels per layer (in place of --method)",
    )
    q.add_argument(
        "--calibrate",
        default="mse",
        metavar="mse|percentile",
        help="activation clipping: least squared error (default) or the 99.99th percentile",
    )
    q.add_argument(
        "--input-bits",
        type=int,
        default=8,
        metavar="K",
        help="the input quantizer's bits, 2-8 (default 8)",
    )
    q.add_argument(
        "--finetune",
        metavar="DATA.npz",
        help="fine-tune the quantized model on 'images' (float32, N x the input shape) and"
        " 'labels' (class indices), distilled from the float model",
    )
    q.add_argument(
        "--prune",
        type=float,
        metavar="F",
        help="remove the fraction F of each layer's output channels (smallest L1 norm); with"
        " --finetune 20 %% at a time, each step fine-tuned",
    )
    q.add_argument(
        "--budget",
        type=_bytes,
        metavar="BYTES",
        help="mixed precision: each layer's weight bits (1 to --weights) chosen by its measured"
        " sensitivity so that the compiled weights fit BYTES (350000, 350k, 1.5M, 512KiB)",
    )
    q.add_argument(
        "--epochs", type=int, default=2, help="--finetune: passes (per pruning step; default 2)"
    )
    q.add_argument("--lr", type=float, default=2e-4, help="--finetune: Adam's learning rate")
    q.add_argument(
        "--keep-bn-stats",
        action="store_true",
        help="keep the float model's BatchNorm statistics (default: re-estimated on the"
        " calibration samples after quantizing)",
    )
    q.add_argument("--trust", action="store_true", help="as for compile")
    q.set_defaults(func=cmd_quantize)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BncError as e:
        print(f"bnc: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bnc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
