"""The fpga target: the generated Verilog under Verilator matches the interpreter and the C
target bit for bit, its measured frame interval matches the cycle model, every generated file
is lint-clean, sparsity shows in the generated structure, and the top's own cocotb test
passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnc.backends.c.emit import emit as c_emit
from bnc.backends.c.toolchain import HOST
from bnc.backends.fpga.emit import emit
from bnc.backends.fpga.lower import ConvEngine, conv_cycles
from bnc.backends.fpga.lower import lower as fpga_lower
from bnc.ir.passes import lower
from bnc.sim import fpga, host, verilator

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import assert_equal  # noqa: E402
from irgen import (  # noqa: E402
    multibit_chain,
    multibit_resnet,
    random_dag,
    random_graph,
    random_input,
)

# (seed, fold): fold 1 is the default (every stage folded to the slowest one); fold k asks
# for a frame rate k times lower, so engines take more passes with fewer lanes and deep
# weight columns move to block ROMs.
CASES = [(0, 1), (1, 1), (2, 1), (3, 4), (4, 1), (5, 16), (6, 1), (7, 8), (9, 1), (11, 3), (43, 2)]


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("make")
    require_tool("c++")


def _fps(graph, fold: int) -> float | None:
    if fold == 1:
        return None
    return 100e6 / (fpga_lower(graph, "m").interval * fold)


@pytest.mark.parametrize(("seed", "fold"), CASES, ids=lambda v: str(v))
def test_matches_interpreter_and_c(seed: int, fold: int, tmp_path: Path) -> None:
    _check(lower(random_graph(seed)), f"random{seed}", seed, fold, seed in (0, 3), tmp_path)


# multibit_chain (seed, fold): k-bit activations as multi-thresholds (1 to 15 levels), weights
# of two to seven masks, max-pools of codes, global average pools, at the default rate and
# folded further.
MULTIBIT = [(0, 1), (2, 1), (10, 1), (18, 1), (20, 1), (0, 4), (14, 4), (27, 3)]


@pytest.mark.parametrize(("seed", "fold"), MULTIBIT, ids=lambda v: str(v))
def test_multibit_chain_matches_interpreter(seed: int, fold: int, tmp_path: Path) -> None:
    graph = lower(multibit_chain(seed))
    view = _check(graph, f"multibit{seed}", seed, fold, seed == 2, tmp_path)
    conv = [e for e in view.engines if isinstance(e, ConvEngine)]
    assert any(e.levels for e in conv) or any(e.masks > 1 for e in conv)


# Graphs (generator, seed, fold): random_dag's identity adds and 1x1 downsampling shortcuts
# over bits, concats whose source another layer also reads, global average pools;
# multibit_resnet's shortcuts of k-bit codes, across one layer or two (a deeper copy).
GRAPHS = [("dag", 0, 1), ("dag", 3, 3), ("dag", 4, 1), ("dag", 6, 2), ("res", 3, 1),
          ("res", 9, 1), ("res", 24, 3), ("res", 25, 1)]  # fmt: skip


@pytest.mark.parametrize(("gen", "seed", "fold"), GRAPHS, ids=lambda v: str(v))
def test_graphs_match_interpreter(gen: str, seed: int, fold: int, tmp_path: Path) -> None:
    graph = lower((random_dag if gen == "dag" else multibit_resnet)(seed))
    view = _check(graph, f"{gen}{seed}", seed, fold, (gen, seed) == ("res", 9), tmp_path)
    assert len(view.buffers) > len(view.engines) + 1  # a tensor read twice has two copies
    if (gen, seed) in (("dag", 0), ("res", 9)):  # a shortcut across two stages
        assert max(b.banks for b in view.buffers) == 3


# Sparsity in time (generator, seed, fold): engines whose fold has steps with every lane's
# weights zero walk a step list of the others. random_graph 13 (99 % sparse, t != 0: the first
# pass walks every step for T), multibit_resnet 13 (ternary and k-bit weights with t = 0).
STEP_LISTS = [("random", 13, 4), ("res", 13, 4)]


@pytest.mark.parametrize(("gen", "seed", "fold"), STEP_LISTS, ids=lambda v: str(v))
def test_step_lists_skip_zero_steps(gen: str, seed: int, fold: int, tmp_path: Path) -> None:
    graph = lower((random_graph if gen == "random" else multibit_resnet)(seed))
    view = _check(graph, f"steps{seed}", seed, fold, gen == "random", tmp_path)
    walked = [e for e in view.engines if isinstance(e, ConvEngine) and e.walk]
    assert len(walked) >= 2
    for e in walked:
        assert e.rows < e.groups * e.kh * e.kw * e.chunks
        rtl = tmp_path / "fpga" / "rtl" / f"{view.name}_e{e.index}.v"
        assert f".N({e.rows})" in rtl.read_text()


def _check(graph, name: str, seed: int, fold: int, with_c: bool, tmp_path: Path):
    """Emit, lint, run 9 random inputs under Verilator: equal to the interpreter (and to the
    C target where ``with_c``), measured interval equal to the model's."""
    out = tmp_path / "fpga"
    out.mkdir()
    view = emit(graph, out, name, fps_target=_fps(graph, fold))
    lint = subprocess.run(
        ["make", "-s", "-C", str(out), "lint", f"VERILATOR={verilator.executable()}"],
        capture_output=True, text=True, env=verilator.env(),
    )  # fmt: skip
    assert lint.returncode == 0, lint.stderr[-2000:]
    n = 9
    x = random_input(graph, n, seed)
    got, stats = fpga.run(out, x)
    assert_equal(graph, x, got, "fpga")
    # The measured interval is the model's, exactly.
    assert stats["cycles_per_sample"] == view.interval
    assert stats["samples"] == n and stats["latency_cycles"] > 0
    if fold > 1:
        assert view.interval <= view.budget or any(
            isinstance(e, ConvEngine) and e.groups == 1 for e in view.engines
        )
    if with_c:  # the C target gives the same accumulators
        c_dir = tmp_path / "c"
        c_dir.mkdir()
        c_emit(graph, c_dir, name, HOST)
        c_got, _ = host.run(c_dir, x, HOST)
        np.testing.assert_array_equal(got, c_got)
    return view


def test_generated_top_cocotb(tmp_path: Path) -> None:
    """The artifact's own cocotb test (vectors from the interpreter) passes under Verilator."""
    graph = lower(random_graph(3))
    out = tmp_path / "art"
    out.mkdir()
    view = emit(graph, out, "cocotb_model", fps_target=_fps(graph, 2))
    from tests.hw.cocotb_run import run_suite

    sources = [out / f for f in (out / "files.f").read_text().split()]
    run_suite(f"{view.name}_top", "test_top", tmp_path / "build", sources=sources,
              test_dir=out / "cocotb", run_dir=out)  # fmt: skip


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_sparsity_in_the_structure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyverilog reads the generated Verilog: the top's ports have the view's widths, and each
    lane's adder inputs are exactly its live columns (zero kernels produce no logic)."""
    require_tool("iverilog")
    monkeypatch.chdir(tmp_path)  # pyverilog writes its preprocessor output and tables here
    from pyverilog.vparser.parser import parse

    graph = lower(random_graph(5))  # 95 % of the weights at alpha
    out = tmp_path / "art"
    out.mkdir()
    view = emit(graph, out, "sparse")
    conv = [e for e in view.engines if isinstance(e, ConvEngine)]
    assert sum(e.dead for e in conv) > 0
    for e in conv:
        ast, _ = parse([str(out / "rtl" / f"{view.name}_e{e.index}.v")], debug=False)
        text = (out / "rtl" / f"{view.name}_e{e.index}.v").read_text()
        sums = [i for i in _instances(ast) if i[0] in ("bnc_sum", "bnc_psum")]
        assert len(sums) == 1 + sum(1 for lane in e.lanes if lane.width), e.name
        for lane in e.lanes:
            # the lane's input vector reads exactly its live channels
            if lane.width:
                block = text.split(f"wire [{lane.width * e.qw - 1}:0] m{lane.index} = {{")[1]
                block = block.split("};")[0]
                read = sorted(int(t.split("]")[0].split(" ")[0]) for t in
                              block.split("x1[")[1:])  # fmt: skip
                assert read == sorted(c.c * e.qw for c in lane.columns)
    top, _ = parse([str(out / "rtl" / f"{view.name}_top.v")], debug=False)
    ports = _ports(top)
    assert ports["s_axis_tdata"] == view.in_word
    assert ports["m_axis_tdata"] == 64


def _instances(ast) -> list[tuple[str, str]]:
    from pyverilog.vparser import ast as A

    found = []

    def walk(node):
        if isinstance(node, A.Instance):
            found.append((node.module, node.name))
        for child in node.children():
            walk(child)

    walk(ast)
    return found


def _ports(ast) -> dict[str, int]:
    from pyverilog.vparser import ast as A

    widths: dict[str, int] = {}

    def walk(node):
        if isinstance(node, A.Input | A.Output):
            w = node.width
            widths[node.name] = 1 if w is None else int(w.msb.value) - int(w.lsb.value) + 1
        for child in node.children():
            walk(child)

    walk(ast)
    return widths


def test_folding_meets_the_frame_budget() -> None:
    """With an fps target every engine fits the budget when it can, and uses fewer lanes."""
    graph = lower(random_graph(7))
    fast = fpga_lower(graph, "m")
    slow = fpga_lower(graph, "m", fps_target=fast.fps / 10)
    assert slow.interval <= slow.budget
    lanes = lambda v: sum(e.pe for e in v.engines if isinstance(e, ConvEngine))  # noqa: E731
    assert lanes(slow) < lanes(fast)
    for e in slow.engines:
        if isinstance(e, ConvEngine):
            steps = e.groups * e.kh * e.kw * e.chunks
            assert e.rows < steps if e.walk else e.rows == steps
            assert e.cycles == conv_cycles(
                e.oh, e.ow, e.rows, e.serial, e.output, e.rlat, e.late, e.split
            )
            assert e.cycles <= slow.budget


def test_deterministic(tmp_path: Path) -> None:
    graph = lower(random_graph(2))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    emit(graph, a, "same")
    emit(graph, b, "same")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_io_spec(tmp_path: Path) -> None:
    graph = lower(random_graph(4))
    emit(graph, tmp_path, "spec")
    spec = json.loads((tmp_path / "io.json").read_text())
    assert spec["output"]["shape"] == list(graph.output.shape)
    assert spec["input"]["shape"] == list(graph.input.shape)


def _board_vectors(graph, view, out: Path, n: int) -> None:
    """board_vectors.json: n random frames as the serial bytes the board takes, and the
    interpreter's accumulators as the bytes it sends back."""
    from bnc.backends.fpga.board import BAUD, BOARDS
    from bnc.backends.fpga.emit import stream_words
    from bnc.ir import interpreter

    spec = json.loads((out / "io.json").read_text())
    x = random_input(graph, n, 1)
    words = stream_words(graph, x, spec)
    nbytes = (view.in_word + 7) // 8
    frames = [
        [b for px in frame for b in sum(int(v) << (32 * k) for k, v in enumerate(px))
         .to_bytes(4 * len(px), "little")[:nbytes]]
        for frame in words
    ]  # fmt: skip
    o, h, w = spec["output"]["shape"]
    acc = interpreter.run(graph, x).reshape(n, o, h, w).transpose(0, 2, 3, 1).reshape(n, -1)
    expected = [[b for v in row for b in int(v).to_bytes(8, "little", signed=True)] for row in acc]
    board = BOARDS[spec["board"]]
    vec = {"frames": frames, "expected": expected, "clks": round(view.clock_mhz * 1e6 / BAUD),
           "clock_pin": f"clk_{int(board.osc_mhz)}mhz"}  # fmt: skip
    (out / "board_vectors.json").write_text(json.dumps(vec))


def test_board_serial_round_trip(tmp_path: Path) -> None:
    """The ulx3s-85f board top (PLL bypassed in simulation) streams frames in over its serial
    port and the interpreter's accumulators out, byte for byte; its files pass lint."""
    from tests.hw.cocotb_run import run_suite

    graph = lower(random_graph(4))
    out = tmp_path / "art"
    out.mkdir()
    view = emit(graph, out, "brd", board="ulx3s-85f")
    top = out / "board" / f"{view.name}_board.v"
    for f in (top.name, "pins.lpf", "ecp5.ys", "Makefile"):
        assert (out / "board" / f).is_file(), f
    sources = [out / f for f in (out / "files.f").read_text().split()] + [top]
    lint = subprocess.run(
        [verilator.executable(), "--lint-only", "-Wall", "-DBNC_SIM", "--top-module",
         f"{view.name}_board", *map(str, sources)],
        capture_output=True, text=True, env=verilator.env(),
    )  # fmt: skip
    assert lint.returncode == 0, lint.stderr[-2000:]
    _board_vectors(graph, view, out, 2)
    run_suite(f"{view.name}_board", "cocotb_board", tmp_path / "build", sources=sources,
              test_dir=Path(__file__).parent / "hw", run_dir=out,
              defines={"BNC_SIM": 1})  # fmt: skip


def test_board_flow_to_bitstream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """yosys synth_ecp5, nextpnr-ecp5 and ecppack (PyPI) turn a design into a bitstream for
    the LFE5U-85F; bnc report shows Fmax against the clock and the cells used."""
    from bnc.backends.fpga.toolchain import place_and_route

    graph = lower(random_graph(3))
    out = tmp_path / "art"
    out.mkdir()
    emit(graph, out, "flow", board="ulx3s-85f")
    placed = place_and_route(out, quiet=True)
    assert placed.bitstream.stat().st_size > 100_000
    assert placed.achieved_mhz > 0 and all(c == 100.0 for _, c in placed.fmax.values())
    assert placed.utilization["TRELLIS_COMB"][0] > 0
    assert placed.utilization["EHXPLLL"][0] == 1
    from bnc.backends.fpga.report import board_section

    text = board_section(out)
    assert "Fmax" in text and "TRELLIS_COMB" in text and "openFPGALoader" in text


def test_pll_dividers() -> None:
    from bnc.backends.fpga.board import pll
    from bnc.errors import BncError

    p = pll(25.0, 100.0)
    assert (p.ref, p.fb, p.op, p.out_mhz) == (1, 4, 6, 100.0)
    for want in (50.0, 75.0, 125.0, 137.5):
        q = pll(25.0, want)
        assert abs(q.out_mhz - want) <= 0.005 * want and 400 <= q.out_mhz * q.op <= 800
    with pytest.raises(BncError, match="PLL cannot"):
        pll(25.0, 1000.0)
