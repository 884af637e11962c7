"""The command line as a user meets it: each bad input is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bnc.nn as bn
from bnc.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from modelgen import random_batch, random_model  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = next(m for m, _ in map(random_model, range(100)) if isinstance(m[0], bn.InputQuantizer))
    path = tmp_path_factory.mktemp("m") / "net.pt"
    torch.save(model, path)
    return path


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    line = err[-1]
    assert line.startswith("bnc: error: "), err
    for n in needles:
        assert n in line, line
    return line


def test_compile_run_inspect_report(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "-o", str(out)]) == 0
    shape = tuple(__import__("json").loads((out / "bnc.json").read_text())["input_shape"])
    x = random_batch(shape, 5, 0)
    np.save(tmp_path / "x.npy", x)
    args = [
        "run",
        str(out),
        "--input",
        str(tmp_path / "x.npy"),
        "--output",
        str(tmp_path / "y.npy"),
        "--stats",
        str(tmp_path / "s.json"),
    ]
    assert main(args) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape[0] == 5
    stats = __import__("json").loads((tmp_path / "s.json").read_text())
    assert stats["samples"] == 5 and stats["seconds_per_sample"] > 0
    ref = torch.load(model_file, weights_only=False)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, ref.reshape(5, -1), rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    capsys.readouterr()
    assert main(["inspect", str(model_file)]) == 0
    assert "one-hot %" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert "bnc report" in capsys.readouterr().out


def test_bad_model_files(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    one_error_line(capsys, ["compile", str(text)], str(text))
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    one_error_line(capsys, ["compile", str(corrupt)], str(corrupt))
    one_error_line(capsys, ["compile", str(tmp_path / "missing.pt")], "missing.pt")
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_truncated_model(model_file: Path, tmp_path: Path, capsys) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    one_error_line(capsys, ["compile", str(cut), "-o", str(tmp_path / "o")], "cut.pt")
    assert not (tmp_path / "o").exists()


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = bn.InputQuantizer(input_shape=(1, 4, 4))
        self.fc = bn.BinaryLinear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.q(x), 1))


def test_pickle_outside_allow_list_needs_trust(tmp_path: Path, capsys) -> None:
    path = tmp_path / "custom.pt"
    torch.save(Custom().eval(), path)
    line = one_error_line(capsys, ["compile", str(path), "-o", str(tmp_path / "o")], "--trust")
    assert "Custom" in line
    assert main(["compile", str(path), "--trust", "-o", str(tmp_path / "o")]) == 0


def test_unsupported_layer(tmp_path: Path, capsys) -> None:
    path = tmp_path / "lstm.pt"
    model = nn.Sequential(bn.InputQuantizer(input_shape=(1, 4, 4)), nn.LSTM(4, 4))
    torch.save(model, path)
    one_error_line(capsys, ["compile", str(path), "--trust"], "LSTM")


def test_wrong_input_shape(model_file: Path, tmp_path: Path, capsys) -> None:
    model = nn.Sequential(
        bn.Sign(),
        bn.BinaryConv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        bn.Sign(),
        nn.Flatten(),
        bn.BinaryLinear(4 * 4 * 4, 2),
    ).eval()
    path = tmp_path / "noshape.pt"
    torch.save(model, path)
    one_error_line(capsys, ["compile", str(path)], "--input-shape")
    one_error_line(capsys, ["compile", str(path), "--input-shape", "1,6,6"], "noshape.pt")
    one_error_line(capsys, ["compile", str(path), "--input-shape", "x,y"], "x,y")
    assert main(["compile", str(path), "--input-shape", "3,6,6", "-o", str(tmp_path / "o")]) == 0


def test_bad_input_arrays(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "-o", str(out)]) == 0
    np.save(tmp_path / "wrong_shape.npy", np.zeros((2, 1, 3, 3), dtype=np.float32))
    np.save(tmp_path / "wrong_dtype.npy", np.zeros((2, 1, 3, 3), dtype=np.float64))
    (tmp_path / "text.npy").write_text("not an array")
    for name, needle in [
        ("wrong_shape.npy", "shape"),
        ("wrong_dtype.npy", "float32"),
        ("text.npy", "text.npy"),
    ]:
        y = tmp_path / f"{name}.out.npy"
        one_error_line(
            capsys, ["run", str(out), "--input", str(tmp_path / name), "--output", str(y)], needle
        )
        assert not y.exists()
    one_error_line(
        capsys,
        ["run", str(tmp_path), "--input", str(tmp_path / "text.npy")],
        "not a bnc output folder",
    )


def test_unknown_target_and_console_script(model_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bnc", "compile", str(model_file), "--target", "gpu"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("bnc: error: unknown target 'gpu'")
    help_text = subprocess.run(
        [sys.executable, "-m", "bnc", "--help"], capture_output=True, text=True
    ).stdout
    for cmd in ("compile", "run", "inspect", "report"):
        assert cmd in help_text


@pytest.mark.parametrize(
    ("name", "floor"),
    [("fashion_bnn", 0.905), ("fashion_resnet", 0.875),  # the chain: issue 6's target
     ("fashion_w2a2", 0.925), ("fashion_resnet8", 0.885)],  # issue 14: W2A2, 8-bit stream
)  # fmt: skip
def test_bundled_example_accuracy_equals_pytorch(
    name: str, floor: float, tmp_path: Path, capsys
) -> None:
    """The bundled chain model, the bundled binary ResNet (a graph: residual blocks, a global
    pool), the W2A2 chain and the ResNet over an 8-bit stream: compiled C equals PyTorch's
    accuracy on the bundled 2,000 images."""
    data = np.load(EXAMPLES / "fashion_test.npz")
    x = (data["images"].astype(np.float32) / np.float32(255.0)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "fashion"
    assert main(["compile", str(EXAMPLES / f"{name}.pt"), "-o", str(out)]) == 0
    assert (
        main(
            [
                "run",
                str(out),
                "--input",
                str(tmp_path / "x.npy"),
                "--output",
                str(tmp_path / "y.npy"),
            ]
        )
        == 0
    )
    y = np.load(tmp_path / "y.npy")
    model = torch.load(EXAMPLES / f"{name}.pt", weights_only=False).eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    labels = data["labels"]
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert (y.argmax(1) == labels).mean() >= floor


def test_fpga_compile_run_report(model_file: Path, tmp_path: Path, capsys) -> None:
    """The fpga flow as a user meets it: compile, run under Verilator (equal to the C
    target), the stats the issue names, and the report with the yosys estimate."""
    import json

    out, c_out = tmp_path / "my design", tmp_path / "c"  # a space: make cannot build there
    assert main(["compile", str(model_file), "--target", "fpga", "-o", str(out)]) == 0
    assert main(["compile", str(model_file), "-o", str(c_out)]) == 0
    shape = tuple(json.loads((out / "bnc.json").read_text())["input_shape"])
    np.save(tmp_path / "x.npy", random_batch(shape, 7, 1))
    for folder, y in ((out, "y.npy"), (c_out, "yc.npy")):
        args = ["run", str(folder), "--input", str(tmp_path / "x.npy"), "--output",
                str(tmp_path / y), "--stats", str(tmp_path / f"{y}.json")]  # fmt: skip
        assert main(args) == 0
    assert "cycles per frame" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "yc.npy"))
    stats = json.loads((tmp_path / "y.npy.json").read_text())
    assert stats["samples"] == 7 and stats["cycles_per_sample"] > 0
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Cycle model" in text and "frames/s" in text
    assert "LUTs:" in text and "block RAM" in text and "flip-flops" in text


def test_fpga_bad_options(model_file: Path, tmp_path: Path, capsys) -> None:
    base = ["compile", str(model_file), "--target", "fpga", "-o", str(tmp_path / "o")]
    one_error_line(capsys, [*base, "--fps-target", "-3"], "--fps-target", "positive")
    one_error_line(capsys, [*base, "--clock-mhz", "0"], "--clock-mhz", "positive")
    assert not (tmp_path / "o").exists()
    one_error_line(capsys, ["compile", str(model_file), "--fps-target", "100"], "fpga only")
    one_error_line(capsys, [*base, "--board", "pynq"], "--board 'pynq'", "ulx3s-85f")
    one_error_line(capsys, [*base, "--board", "ulx3s-85f", "--clock-mhz", "1000"], "PLL")
    one_error_line(capsys, ["compile", str(model_file), "--board", "ulx3s-85f"], "fpga only")
    assert not (tmp_path / "o").exists()


def test_fpga_unreachable_frame_rate_warns(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["compile", str(model_file), "--target", "fpga", "-o", str(out),
                 "--fps-target", "1e9"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "out of reach" in err and "cycles per frame" in err
    assert (out / "files.f").is_file()


@pytest.mark.parametrize("seed", [3, 17, 42])
def test_cortex_m_equals_c_target(seed: int, tmp_path: Path, capsys) -> None:
    """Random PyTorch models (not in the repository) booted in qemu-system-arm for both cores
    give the host C target's outputs bit for bit; the report has the memory table."""
    import json

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import require_tool

    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    model, shape = random_model(seed)
    path = tmp_path / "net.pt"
    torch.save(model, path)
    outs = {t: tmp_path / f"{t} out" for t in ("c", "cortex-m4", "cortex-m7")}  # a space
    given = ",".join(map(str, shape))
    for target, out in outs.items():
        argv = ["compile", str(path), "--target", target, "-o", str(out), "--input-shape", given]
        assert main(argv) == 0
    np.save(tmp_path / "x.npy", random_batch(shape, 9, seed))
    for target, out in outs.items():
        y, stats = tmp_path / f"{target}.npy", tmp_path / f"{target}.json"
        args = ["run", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(y),
                "--stats", str(stats)]  # fmt: skip
        assert main(args) == 0
    assert "instructions per inference" in capsys.readouterr().out
    want = np.load(tmp_path / "c.npy")
    for core in ("cortex-m4", "cortex-m7"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{core}.npy"), want, err_msg=core)
        stats = json.loads((tmp_path / f"{core}.json").read_text())
        assert stats["samples"] == 9 and stats["instructions_per_sample"] > 0
    assert main(["report", str(outs["cortex-m4"])]) == 0
    text = capsys.readouterr().out
    assert "arm-none-eabi-size" in text and "library (model.o)" in text
    assert "static arena" in text


def test_cortex_m_bad_options(model_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    base = ["compile", str(model_file), "-o", str(out)]
    one_error_line(capsys, [*base, "--target", "cortex-m4", "--schedule", "planar"],
                   "schedule 'planar'", "cortex-m4", "dense, sparse")  # fmt: skip
    one_error_line(capsys, [*base, "--schedule", "sparse"], "schedule 'sparse'", "generic")
    one_error_line(capsys, [*base, "--target", "cortex-m7", "--fps-target", "10"], "fpga")
    assert not out.exists()


class _Graph(nn.Module):
    """A graph model with its own forward, saved as a torch.export program (no --trust)."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.q = bn.InputQuantizer(input_shape=(1, 6, 6))
        self.c1, self.b1 = bn.BinaryConv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.b2 = bn.BinaryConv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.sign = bn.Sign()
        self.fc = bn.BinaryLinear(144, 3)
        gen = torch.Generator().manual_seed(5)
        for b in (self.b1, self.b2):  # statistics off the integer grid, as after training
            b.running_mean.copy_(torch.randn(4, generator=gen))
            b.running_var.copy_(torch.rand(4, generator=gen) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b1(self.c1(self.q(x)))
        s = self.sign(y)
        if self.form == "mul":
            s = s * 2
        elif self.form == "shapes":
            s = self.sign(self.b2(self.c2(s)) + s.mean(dim=(2, 3), keepdim=True))
        elif self.form == "real-shortcut":
            s = self.sign(self.b2(self.c2(s)) + y)
        else:
            s = self.sign(self.b2(self.c2(s)) + s)
        return self.fc(s.flatten(1))


@pytest.mark.parametrize(
    ("form", "needles"),
    [
        ("mul", ("operation 'mul'", "not supported")),
        ("shapes", ("differ in shape",)),
        ("real-shortcut", ("read by 2 layers", "insert bnc.nn.Sign")),
    ],
)
def test_bad_graphs(form: str, needles: tuple[str, ...], tmp_path: Path, capsys) -> None:
    path = tmp_path / f"{form}.pt2"
    program = torch.export.export(_Graph(form).eval(), (torch.zeros(1, 1, 6, 6),))
    torch.export.save(program, path)
    out = tmp_path / "o"
    one_error_line(capsys, ["compile", str(path), "-o", str(out)], *needles)
    assert not out.exists()


def test_graph_program_compiles_and_equals_pytorch(tmp_path: Path, capsys) -> None:
    """The same model with a bit shortcut, as a torch.export program: c equals PyTorch's
    arg-max on random inputs and the interpreter bit for bit."""
    model = _Graph("residual").eval()
    path = tmp_path / "res.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 6, 6),)), path)
    x = random_batch((1, 6, 6), 64, 3)
    np.save(tmp_path / "x.npy", x)
    assert main(["compile", str(path), "-o", str(tmp_path / "out")]) == 0
    assert main(["run", str(tmp_path / "out"), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.98
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-3)


def _multibit(act: nn.Module | None = None) -> nn.Sequential:
    """InputQuantizer, a 2-bit-weight conv, BN, a 2-bit activation, a ternary classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        bn.InputQuantizer(input_shape=(1, 6, 6)),
        bn.BinaryConv2d(1, 4, 3, padding=1, quantizer="int", weight_bits=2),
        nn.BatchNorm2d(4),
        act if act is not None else bn.ActQuantizer(2),
        nn.Flatten(),
        bn.BinaryLinear(144, 3, quantizer="ternary"),
    ).eval()


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        ("qmax", ("layer '3'", "9 bits", "1 to 8")),
        ("scale", ("layer '3'", "scale must be positive")),
        ("nan-level", ("layer '1'",)),
    ],
)
def test_bad_multibit_files(edit: str, needles: tuple[str, ...], tmp_path: Path, capsys) -> None:
    """A saved model with an activation of 9 bits, a non-positive activation scale or a
    non-finite weight scale: one line naming the layer, exit 2, nothing written."""
    model = _multibit()
    with torch.no_grad():
        if edit == "qmax":
            model[3].qmax.fill_(511.0)
        elif edit == "scale":
            model[3].scale.fill_(-0.5)
        else:
            model[1].quantizer.scale[0] = float("nan")
    path = tmp_path / "m.pt"
    torch.save(model, path)
    out = tmp_path / "o"
    one_error_line(capsys, ["compile", str(path), "-o", str(out)], *needles)
    assert not out.exists()


def test_quantizer_without_a_linear_layer_and_fpga_multibit(tmp_path: Path, capsys) -> None:
    """An ActQuantizer straight after the input quantizer, and 8-bit activations for fpga."""
    bad = nn.Sequential(bn.InputQuantizer(input_shape=(1, 6, 6)), bn.ActQuantizer(2),
                        nn.Flatten(), bn.BinaryLinear(36, 3)).eval()  # fmt: skip
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    one_error_line(capsys, ["compile", str(path), "-o", str(tmp_path / "o")], "layer '1'",
                   "activation quantizer")  # fmt: skip
    wide = tmp_path / "mb8.pt"
    torch.save(_multibit(bn.ActQuantizer(8)), wide)  # 8-bit codes: a Requantize
    out = tmp_path / "f"
    one_error_line(capsys, ["compile", str(wide), "--target", "fpga", "-o", str(out)],
                   "fpga: layer '", "does not build yet")  # fmt: skip
    assert not (tmp_path / "o").exists() and not out.exists()


def test_multibit_model_compiles_runs_and_inspects(tmp_path: Path, capsys) -> None:
    model = _multibit()
    path = tmp_path / "mb.pt"
    torch.save(model, path)
    x = random_batch((1, 6, 6), 32, 1)
    np.save(tmp_path / "x.npy", x)
    assert main(["inspect", str(path)]) == 0
    table = capsys.readouterr().out
    assert "8x2" in table and "2x2" in table  # 8-bit input x 2 masks; 2-bit codes x ternary
    assert main(["compile", str(path), "-o", str(tmp_path / "out")]) == 0
    assert main(["run", str(tmp_path / "out"), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0  # fmt: skip
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-4, atol=1e-4)
