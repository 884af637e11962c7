"""``bnc quantize``: float models (chains, residual blocks with their own ``forward``,
concatenations; torch.save, TorchScript and torch.export files) → low-bit ``bnc.nn`` models
that compile and equal the interpreter bit for bit, and the one-line refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bnc
from bnc.cli import main
from bnc.errors import BncError
from bnc.ladder import climb
from bnc.quantization.capture import float_graph
from bnc.quantization.model import choose_scale

SHAPE = (1, 12, 12)


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1.0)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def chain(width: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_bn(nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
        nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.1),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * width * 2 * 2, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 5),
    ), seed)  # fmt: skip


class Block(nn.Module):
    """A ResNet basic block as people write it."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, width: int = 5, classes: int = 7) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())  # fmt: skip
        self.layer1 = Block(width, width, 1)
        self.layer2 = Block(width, 2 * width, 2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(torch.flatten(x.mean((2, 3)), 1))


class Branches(nn.Module):
    """A concatenation of two ReLU branches, then a conv over it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 1)
        self.bn_a = nn.BatchNorm2d(3)
        self.c = nn.Conv2d(7, 6, 3, stride=2)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 5 * 5, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), torch.relu(self.b(x))], dim=1)
        y = torch.relu(self.bn(self.c(y)))
        return self.fc(y.view(y.shape[0], -1))


def _images(n: int, seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32)


MODELS = {"chain": chain, "resnet": lambda: _randomize_bn(ResNet(), 1),
          "branches": lambda: _randomize_bn(Branches(), 2)}  # fmt: skip


@pytest.mark.parametrize("name", list(MODELS))
def test_float_graph_computes_the_model(name: str) -> None:
    model = MODELS[name]()
    x = torch.from_numpy(_images(6, 3))
    g = float_graph(model, SHAPE, name)
    with torch.no_grad():
        assert torch.equal(g(x), model(x))


# (name, weights, activations, method, codebook)
FORMS = [
    ("chain", 2, 2, "amq", None),
    ("chain", 1, 4, "amq", None),
    ("chain", 4, 4, "int", None),
    ("chain", 2, 3, "ternary", None),
    ("chain", 3, 8, "refined", None),
    ("chain", 2, 8, "greedy", None),
    ("chain", 8, 8, "amq", 5),
    ("resnet", 2, 2, "amq", None),
    ("resnet", 4, 8, "int", None),
]


FORM_IDS = [f"{f[0]}-w{f[1]}a{f[2]}-{f[3]}{f[4] or ''}" for f in FORMS]


@pytest.mark.parametrize(("name", "w", "a", "method", "codebook"), FORMS, ids=FORM_IDS)
def test_quantized_models_compile_bit_exactly(
    name: str, w: int, a: int, method: str, codebook: int | None, tmp_path: Path
) -> None:
    """The quantized model loads without --trust, compiles for c, and the target equals the
    interpreter bit for bit on samples that were not the calibration set; PyTorch's arg-max
    agrees with the interpreter's on nearly every sample (DESIGN §2.2)."""
    path = tmp_path / "q.pt"
    q = bnc.quantize(MODELS[name](), torch.from_numpy(_images(64, 4)), weights=w, activations=a,
                     method=method, codebook=codebook, output=path)  # fmt: skip
    x = _images(40, 5)
    compiled = bnc.compile(path, target="c")
    report = climb(q.model, x, ("c",), compiled)
    assert report.bit_exact, str(report)
    assert report.argmax_agreement >= 0.95, str(report)
    kinds = {r.kind for r in q.layers}
    assert kinds == {"input", "weights", "activations"}


def test_quantized_weights_take_the_asked_levels() -> None:
    q = bnc.quantize(chain(), torch.from_numpy(_images(32, 6)), weights=2, activations=2)
    for m in q.model.modules():
        if isinstance(m, bnc.nn.BinaryConv2d | bnc.nn.BinaryLinear):
            w = m.quantizer(m.weight)
            for row in w.reshape(w.shape[0], -1):
                assert torch.unique(row).numel() <= 4
        if isinstance(m, bnc.nn.ActQuantizer):
            assert (float(m.qmin), float(m.qmax)) in ((0.0, 3.0), (-2.0, 1.0))


def test_file_formats(tmp_path: Path) -> None:
    """torch.save (allow-listed torch.nn classes), TorchScript and torch.export files of the
    same float model quantize to the same model."""
    model = chain(seed=3)
    calib = _images(32, 7)
    np.save(tmp_path / "x.npy", calib)
    torch.save(model, tmp_path / "f.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(tmp_path / "f.ts"))
    torch.export.save(torch.export.export(model, (torch.zeros(1, *SHAPE),)), tmp_path / "f.pt2")
    x = torch.from_numpy(_images(8, 8))
    outs = []
    for f in ("f.pt", "f.ts", "f.pt2"):
        q = bnc.quantize(tmp_path / f, tmp_path / "x.npy", weights=2, activations=4)
        with torch.no_grad():
            outs.append(q.model(x))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_mse_scale_beats_the_peak_on_heavy_tails() -> None:
    v = torch.from_numpy(np.random.default_rng(0).standard_t(3, 200_000).astype(np.float32))
    peak = float(v.abs().max()) / 1.0

    def err(s: float) -> float:
        return float(((torch.clamp(torch.round(v / s), -2, 1) * s - v) ** 2).mean())

    s = choose_scale(v, -2, 1, "mse")
    assert err(s) < err(peak / 2) and s < peak / 2
    assert 0 < choose_scale(v.abs(), 0, 15, "percentile") < float(v.abs().max()) / 15


def test_cli_quantize_then_compile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(MODELS["resnet"](), tmp_path / "f.pt")
    with pytest.raises(BncError):  # a user class needs --trust
        bnc.quantize(tmp_path / "f.pt", torch.from_numpy(_images(8, 9)), weights=2)
    np.save(tmp_path / "x.npy", _images(48, 9))
    args = ["quantize", str(tmp_path / "f.pt"), "--weights", "2", "--activations", "4",
            "--calibration", str(tmp_path / "x.npy"), "-o", str(tmp_path / "q.pt"),
            "--trust"]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "weights" in table and "relative error" in table
    np.save(tmp_path / "t.npy", _images(10, 10))
    assert main(["compile", str(tmp_path / "q.pt"), "-o", str(tmp_path / "out")]) == 0
    assert main(["run", str(tmp_path / "out"), "--input", str(tmp_path / "t.npy")]) == 0


class Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x)).flatten(1)


BAD = [
    ("weights 9", {"weights": 9}, "--weights must be an integer from 1 to 8"),
    ("weights 0", {"weights": 0}, "--weights must be an integer from 1 to 8"),
    ("method", {"method": "lloyd"}, "--method must be one of"),
    ("ternary bits", {"method": "ternary", "weights": 3}, "--weights must be 2"),
    ("codebook", {"codebook": 1}, "--codebook must be a level count"),
    ("calibration rank", {"calibration": np.zeros(5, np.float32)}, "shape"),
    ("calibration dtype", {"calibration": np.zeros((4, *SHAPE), np.uint8)}, "dtype uint8"),
    ("calibration shape", {"calibration": np.zeros((4, 3, 12, 12), np.float32)},
     "does not run on inputs of shape 3,12,12"),
    ("layer", {"model": Gelu()}, "layer 'act' (gelu) cannot be quantized"),
    ("bn after relu", {"model": nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2),
                                              nn.Flatten(), nn.Linear(200, 3))},
     "layer '2' (BatchNorm2d) follows a ReLU"),
    ("cat", {"model": Branches()}, "layer 'cat' (cat): the compiler concatenates 1-bit"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    what: str, change: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = change.pop("model", chain())
    torch.save(model, tmp_path / "f.pt")
    np.save(tmp_path / "x.npy", change.pop("calibration", _images(8, 11)))
    opts = {"weights": 2, **change}
    args = ["quantize", str(tmp_path / "f.pt"), "--calibration", str(tmp_path / "x.npy"),
            "-o", str(tmp_path / "q.pt"), "--trust"]  # fmt: skip
    for k, v in opts.items():
        args += [f"--{k}", str(v)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("bnc: error:")]
    assert len(errors) == 1 and errors[0] == err[-1] and message in err[-1], err
    assert not (tmp_path / "q.pt").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "f.pt", "x.npy"]  # fmt: skip


def test_finetune_trains_and_stays_bit_exact(tmp_path: Path) -> None:
    """One epoch of straight-through fine-tuning moves the weights' levels and the activation
    scales, lowers the loss on the data it trains on, and the result still compiles to code
    equal to the interpreter."""
    model = chain(seed=5)
    x = _images(192, 12)
    with torch.no_grad():  # labels a float model can learn: its own arg-max, shuffled a bit
        labels = model(torch.from_numpy(x)).argmax(1).numpy()
    labels[::7] = (labels[::7] + 1) % 5
    np.savez(tmp_path / "d.npz", images=x, labels=labels)
    calib = torch.from_numpy(_images(64, 13))
    before = bnc.quantize(model, calib, weights=2, activations=2)
    after = bnc.quantize(model, calib, weights=2, activations=2, finetune=tmp_path / "d.npz",
                         epochs=3, lr=3e-3, output=tmp_path / "q.pt")  # fmt: skip

    def params(q: bnc.Quantized) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in q.model.named_parameters()}

    moved = [k for k, v in params(after).items() if not torch.equal(v, params(before)[k])]
    assert any("quantizer.levels" in k for k in moved) and any("scale" in k for k in moved)
    t = torch.from_numpy(x)
    with torch.no_grad():
        loss = [float(F.cross_entropy(q.model(t), torch.from_numpy(labels))) for q in (before,
                after)]  # fmt: skip
    assert loss[1] < loss[0], loss
    report = climb(after.model, _images(24, 14), ("c",), bnc.compile(tmp_path / "q.pt"))
    assert report.bit_exact, str(report)


BAD_DATA = [
    ("uint8 images", {"images": np.zeros((4, *SHAPE), np.uint8), "labels": np.zeros(4, int)},
     "'images' is uint8"),
    ("shape", {"images": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(4, int)},
     "takes float32 (N, 1, 12, 12)"),
    ("labels", {"images": np.zeros((4, *SHAPE), np.float32), "labels": np.zeros(3, int)},
     "'labels' is int64 (3,)"),
    ("classes", {"images": np.zeros((4, *SHAPE), np.float32), "labels": np.full(4, 5)},
     "labels range from 5 to 5; the model has 5 outputs"),
    ("keys", {"x": np.zeros(3)}, "arrays 'images' and 'labels'"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "arrays", "message"), BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_finetune_data_is_one_line(
    what: str, arrays: dict, message: str, tmp_path: Path
) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(BncError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bnc.quantize(chain(), torch.from_numpy(_images(8, 15)), weights=2,
                     finetune=tmp_path / "d.npz", output=tmp_path / "q.pt")  # fmt: skip
    assert not (tmp_path / "q.pt").exists()
