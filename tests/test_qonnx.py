"""QONNX import (frontend/qonnx.py): FINN's bnn_pynq topologies and a residual network,
exported by Brevitas in the test, against qonnx's own execution of the same file; every
target against the interpreter bit for bit; every bad file one line, exit 2, nothing written.

The documented agreement with the reference (DESIGN §2.2): equal arg-max, and outputs within
``OUTPUT_TOL`` of qonnx's (its float32 sums and BatchNorms round; bnc's integer planes and
thresholds are exact, and a value within float32 rounding of a threshold may go either way).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import bnc
from bnc.api import dequantize_flat, output_op
from bnc.cli import main
from bnc.frontend import load_model
from bnc.ir import interpreter
from bnc.ir.passes import lower

sys.path.insert(0, str(Path(__file__).parent))
import qonnxgen as G  # noqa: E402
from conftest import require_tool  # noqa: E402
from differential import check  # noqa: E402
from test_cli import EXAMPLES, one_error_line  # noqa: E402

OUTPUT_TOL = 2**-14
"""Outputs may differ from qonnx's by this much relative to the largest |output| (float32
rounding of the reference's sums, measured at most 2^-20 here)."""

SAMPLES = 24


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    """Exported files, made once per module: name → (path, input shape)."""
    cache: dict[str, tuple[Path, tuple[int, ...]]] = {}
    folder = tmp_path_factory.mktemp("qonnx")

    def get(name: str, seed: int = 0) -> tuple[Path, tuple[int, ...]]:
        key = f"{name}-{seed}"
        if key not in cache:
            if name.startswith("res"):
                bits = int(name[3:])
                module, shape = G.residual_model(seed, bits=bits), (1, 12, 12)
            elif name == "trunc":
                module, shape = G.trunc_model(seed), (1, 8, 8)
            else:
                module, shape = G.finn_model(name, seed), G.input_shape(name)
            cache[key] = (G.export(module, shape, folder / f"{key}.onnx"), shape)
        return cache[key]

    return get


def agreement(path: Path, shape, seed: int) -> tuple[np.ndarray, object]:
    imported = load_model(path)
    assert tuple(imported.input_shape) == tuple(shape)
    lowered = lower(imported.graph)
    x = G.random_inputs(shape, SAMPLES, seed)
    ref = G.reference(path, x)
    got = dequantize_flat(interpreter.run(lowered, x).reshape(len(x), -1), output_op(lowered))
    assert got.shape == ref.shape
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999, (got.argmax(1), ref.argmax(1))
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(got - ref).max() <= OUTPUT_TOL * scale, np.abs(got - ref).max()
    return x, lowered


@pytest.mark.parametrize("name", G.FINN_MODELS)
def test_finn_model_equals_qonnx_and_c_equals_interpreter(name, files, tmp_path: Path) -> None:
    seed = G.FINN_MODELS.index(name)
    path, shape = files(name, seed)
    x, lowered = agreement(path, shape, seed)
    check(lowered, x[:8], "c", tmp_path)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_residual_model_equals_qonnx(bits: int, files, tmp_path: Path) -> None:
    path, shape = files(f"res{bits}", bits)
    x, lowered = agreement(path, shape, bits)
    check(lowered, x[:8], "c", tmp_path)


@pytest.mark.parametrize("seed", [1, 2])
def test_trunc_avg_pool_model_equals_qonnx(seed: int, files, tmp_path: Path) -> None:
    path, shape = files("trunc", seed)
    assert "Trunc" in {n.op_type for n in onnx.load(str(path)).graph.node}
    x, lowered = agreement(path, shape, seed)
    check(lowered, x[:8], "c", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", G.FINN_MODELS)
@pytest.mark.parametrize("seed", [11, 12])
def test_finn_models_more_seeds(name: str, seed: int, files) -> None:
    agreement(*files(name, seed), seed)


CROSS = {
    "arm64": (("aarch64-linux-gnu-gcc", "qemu-aarch64"), ("tfc_2w2a", "cnv_1w1a", "res3")),
    "cortex-m4": (("arm-none-eabi-gcc", "qemu-system-arm"), ("tfc_1w1a", "sfc_1w2a", "res2")),
}


@pytest.mark.parametrize(
    ("target", "name"), [(t, n) for t, (_tools, names) in CROSS.items() for n in names]
)
def test_qonnx_models_on_arm_targets(target: str, name: str, files, tmp_path: Path) -> None:
    for tool in CROSS[target][0]:
        require_tool(tool)
    seed = 3
    path, shape = files(name, seed)
    lowered = lower(load_model(path).graph)
    check(lowered, G.random_inputs(shape, 6, seed), target, tmp_path)


@pytest.mark.parametrize("name", ["tfc_1w1a", "cnv_1w1a"])
def test_fpga_builds_binary_qonnx(name: str, files, tmp_path: Path) -> None:
    """W1A1: the input's 2x - 1 is a Sign threshold of 0.5 (TFC) or the 8-bit input
    quantizer's float32 x*2 - 1 (CNV), which the fpga runner applies as the interpreter does."""
    path, shape = files(name, 5)
    check(lower(load_model(path).graph), G.random_inputs(shape, 3, 5), "fpga", tmp_path)


@pytest.mark.parametrize("name", ["tfc_1w2a", "tfc_2w2a", "res2"])
def test_fpga_builds_multibit_qonnx(name: str, files, tmp_path: Path) -> None:
    """FINN's W1A2 and W2A2: 2-bit activations as multi-thresholds, 2-bit weights as two
    masks over one window walk; the Brevitas residual network (its add of two requantized
    3-bit tensors: one rides on the other as a shortcut). Under Verilator equal to the
    interpreter (and so to the C target, which the tests above hold to it)."""
    path, shape = files(name, 5)
    check(lower(load_model(path).graph), G.random_inputs(shape, 3, 5), "fpga", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnv_1w2a", "cnv_2w2a"])
def test_fpga_builds_multibit_cnv(name: str, files, tmp_path: Path) -> None:
    """The CNVs (a Verilator build of 2 to 5 minutes each)."""
    path, shape = files(name, 5)
    check(lower(load_model(path).graph), G.random_inputs(shape, 2, 5), "fpga", tmp_path)


def test_fpga_refuses_what_it_does_not_build(files, tmp_path: Path, capsys) -> None:
    """The 4-bit residual model's 5-bit shared quantizer (requantized codes), which fpga does
    not build yet."""
    multi, _ = files("res4", 5)
    out = tmp_path / "multi"
    one_error_line(capsys, ["compile", str(multi), "--target", "fpga", "-o", str(out)], "fpga:")
    assert not out.exists()


def test_cli_compile_run_inspect(files, tmp_path: Path, capsys) -> None:
    path, shape = files("cnv_1w2a", 7)
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    manifest = json.loads((out / "bnc.json").read_text())
    assert tuple(manifest["input_shape"]) == shape
    x = G.random_inputs(shape, 6, 7)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy")]) == 0  # fmt: skip
    y, ref = np.load(tmp_path / "y.npy"), G.reference(path, x)
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert np.abs(y - ref).max() <= OUTPUT_TOL * max(1.0, float(np.abs(ref).max()))
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "one-hot %" in text and "3,32,32" in text


def test_brevitas_module_directly() -> None:
    """A live Brevitas module (``bnc.compile(module, shape)``) is exported to QONNX in memory.
    (Brevitas 0.13.4 modules cannot be torch.save'd whole: its injector classes do not
    pickle, so the file path is the QONNX export.)"""
    module = G.residual_model(21, bits=3)
    compiled = bnc.compile(module, (1, 12, 12))
    x = G.random_inputs((1, 12, 12), 8, 21)
    y, ref = compiled.run(x), G.torch_reference(module, x)
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert np.abs(y - ref).max() <= OUTPUT_TOL * max(1.0, float(np.abs(ref).max()))
    with pytest.raises(bnc.BncError, match="input shape"):
        bnc.compile(module, (2, 12, 12))


# --- bad files ---------------------------------------------------------------------------


def _edit(path: Path, tmp: Path, how: str) -> Path:
    model = onnx.load(str(path))
    g = model.graph
    out = tmp / f"{how}.onnx"
    if how == "ir":
        model.ir_version = 99
    elif how == "opset":
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 99
    elif how == "node":
        last = g.node[-1]
        g.node.append(onnx.helper.make_node("Softmax", [last.output[0]], ["soft"], name="soft"))
        g.output[0].name = "soft"
    elif how == "dynamic":
        g.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    elif how == "float-weight":  # the first Gemm reads the float weight, not its Quant
        gemm = next(n for n in g.node if n.op_type == "Gemm")
        quant = next(n for n in g.node if n.output[0] == gemm.input[1])
        gemm.input[1] = quant.input[0]
    elif how == "float-act":  # the second Gemm reads the BatchNorm, not the binarizer
        gemm = [n for n in g.node if n.op_type == "Gemm"][1]
        quant = next(n for n in g.node if n.output[0] == gemm.input[0])
        gemm.input[0] = quant.input[0]
    elif how == "external":
        onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="weights.bin", size_threshold=0)  # fmt: skip
        (tmp / "weights.bin").unlink()
        return out
    onnx.save(model, str(out))
    return out


BAD = {
    "ir": ("IR version 99",),
    "opset": ("opset 99",),
    "node": ("'soft'", "Softmax", "supported:"),
    "dynamic": ("dynamic shape", "--input-shape"),
    "float-weight": ("float constant", "Quant"),
    "float-act": ("real (unquantized)", "Quant"),
    "external": ("weights.bin", "missing"),
}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_qonnx_files(how: str, files, tmp_path: Path, capsys) -> None:
    path, _ = files("tfc_1w1a", 0)
    bad = _edit(path, tmp_path, how)
    out = tmp_path / "out"
    one_error_line(capsys, ["compile", str(bad), "-o", str(out)], str(bad), *BAD[how])
    assert not out.exists()


def test_truncated_and_foreign_onnx_files(files, tmp_path: Path, capsys) -> None:
    path, _ = files("tfc_1w1a", 0)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    text = tmp_path / "text.onnx"
    text.write_text("not a model\n")
    for bad in (cut, text):
        out = tmp_path / f"{bad.stem}-out"
        one_error_line(capsys, ["compile", str(bad), "-o", str(out)], str(bad), "ONNX")
        assert not out.exists()


@pytest.mark.parametrize("name", ["tfc_2w2a", "cnv_1w1a", "res3"])
def test_torchscript_exporter_files(name: str, tmp_path: Path) -> None:
    """Brevitas' TorchScript exporter writes Transpose + MatMul, a Pow in TensorNorm and
    GlobalAveragePool + Flatten: the same models, the same agreement."""
    if name.startswith("res"):
        module, shape = G.residual_model(4, bits=3), (1, 12, 12)
    else:
        module, shape = G.finn_model(name, 4), G.input_shape(name)
    path = G.export(module, shape, tmp_path / f"{name}.onnx", dynamo=False)
    x, lowered = agreement(path, shape, 4)
    (tmp_path / "c").mkdir()
    check(lowered, x[:4], "c", tmp_path / "c")


def test_bundled_brevitas_example_equals_qonnx(tmp_path: Path) -> None:
    """examples/fashion_tfc_w1a1.onnx (TFC-W1A1 trained with Brevitas by
    examples/train_brevitas.py): compiled C gives qonnx's arg-max on the bundled 2,000
    FashionMNIST images, at its accuracy (83.35 % there; 82.09 % on all 10,000)."""
    model = EXAMPLES / "fashion_tfc_w1a1.onnx"
    data = np.load(EXAMPLES / "fashion_test.npz")
    x = (data["images"].astype(np.float32) / np.float32(255.0)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "tfc"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy")]) == 0  # fmt: skip
    y, ref = np.load(tmp_path / "y.npy"), G.reference(model, x)
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert np.abs(y - ref).max() <= OUTPUT_TOL * max(1.0, float(np.abs(ref).max()))
    assert (y.argmax(1) == data["labels"]).mean() >= 0.83


def test_finn_multithreshold_nodes(files, tmp_path: Path) -> None:
    """FINN's MultiThreshold (as its conversion writes activations): tfc_1w2a with each 2-bit
    activation Quant replaced by random sorted per-channel thresholds, out_bias -1."""
    path, shape = files("tfc_1w2a", 8)
    model = onnx.load(str(path))
    rng = np.random.default_rng(8)
    g = model.graph
    for i, node in enumerate(list(g.node)):
        if node.op_type != "Quant" or node.input[0] in {t.name for t in g.initializer}:
            continue
        if not any(n.op_type == "BatchNormalization" and n.output[0] == node.input[0]
                   for n in g.node):  # fmt: skip
            continue
        c = next(int(n.input[1] in {t.name for t in g.initializer}) and
                 onnx.numpy_helper.to_array(next(t for t in g.initializer
                                                 if t.name == n.input[1])).shape[0]
                 for n in g.node if n.output[0] == node.input[0])  # fmt: skip
        th = np.sort(rng.normal(0, 1.5, (c, 2)), axis=1).astype(np.float32)
        name = f"mt_thresholds_{i}"
        g.initializer.append(onnx.numpy_helper.from_array(th, name))
        mt = onnx.helper.make_node("MultiThreshold", [node.input[0], name], list(node.output),
                                   domain="qonnx.custom_op.general", name=f"mt{i}",
                                   out_dtype="INT2", out_scale=1.0, out_bias=-1.0)  # fmt: skip
        g.node.insert(list(g.node).index(node), mt)
        g.node.remove(node)
    assert sum(n.op_type == "MultiThreshold" for n in g.node) == 3
    out = tmp_path / "mt.onnx"
    onnx.save(model, str(out))
    x, lowered = agreement(out, shape, 8)
    check(lowered, x[:6], "c", tmp_path)
