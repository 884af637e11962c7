"""Every hand-written block in hw/: lint-clean under verilator -Wall, and its cocotb suite."""

from __future__ import annotations

import subprocess

import pytest

from bnc.backends.fpga.lower import step_list
from bnc.sim import verilator
from tests.hw.cocotb_run import run_suite


@pytest.mark.parametrize("source", verilator.hw_sources(), ids=lambda p: p.stem)
def test_lint_clean(source):
    proc = subprocess.run(
        [
            verilator.executable(),
            *verilator.LINT,
            f"-I{verilator.HW}",
            str(source),
            "--top-module",
            source.stem,
        ],
        capture_output=True,
        text=True,
        env=verilator.env(),
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "params",
    [
        dict(N=1, W=1, SIGNED=0),
        dict(N=37, W=1, SIGNED=0),
        dict(N=5, W=9, SIGNED=1),
        dict(N=64, W=1, SIGNED=0),
        dict(N=3, W=4, SIGNED=1),
    ],
    ids=lambda p: f"N{p['N']}W{p['W']}S{p['SIGNED']}",
)
def test_sum(params, tmp_path):
    run_suite("bnc_sum", "cocotb_sum", tmp_path, params)


@pytest.mark.parametrize(
    "params",
    [
        dict(N=64, W=1, SIGNED=0, GROUP=8),
        dict(N=37, W=1, SIGNED=0, GROUP=8),
        dict(N=5, W=9, SIGNED=1, GROUP=2),
        dict(N=1, W=1, SIGNED=0, GROUP=8),
        dict(N=9, W=1, SIGNED=0, OW=4, GROUP=8),
        dict(N=24, W=4, SIGNED=1, OW=9, GROUP=8),
    ],
    ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()),
)
def test_psum(params, tmp_path):
    """bnc_psum: the sum a clock later, in groups (a group's sum as wide as the total)."""
    run_suite("bnc_psum", "cocotb_psum", tmp_path, params)


WINDOWS = [
    dict(IH=5, IW=6, KH=3, KW=3, SH=1, SW=1, PH=1, PW=1, G=1, F=1),
    dict(IH=7, IW=4, KH=3, KW=2, SH=2, SW=1, PH=1, PW=0, G=3, F=2),
    dict(IH=1, IW=1, KH=1, KW=1, SH=1, SW=1, PH=0, PW=0, G=5, F=3),
    dict(IH=6, IW=6, KH=5, KW=5, SH=3, SW=2, PH=2, PW=2, G=1, F=1),
    dict(IH=9, IW=7, KH=3, KW=3, SH=2, SW=3, PH=2, PW=1, G=2, F=5),
]


def _listed(rows: tuple[int, ...], **geo: int) -> dict[str, object]:
    """A window that walks the step list of ``rows`` (the fpga target's ``step_list``)."""
    table = step_list(rows, geo["KH"], geo["KW"], geo["F"])
    return dict(geo, N=len(rows), LIST=table)


# step lists: passes of different lengths, one step, steps with padded taps only
WINDOWS += [
    _listed((0, 3, 4, 5, 8, 13, 14, 17, 30, 35),
            IH=7, IW=4, KH=3, KW=2, SH=2, SW=1, PH=1, PW=0, G=3, F=2),
    _listed((4,), IH=5, IW=6, KH=3, KW=3, SH=1, SW=1, PH=1, PW=1, G=1, F=1),
    _listed(tuple(range(0, 81, 4)), IH=6, IW=6, KH=3, KW=3, SH=2, SW=2, PH=2, PW=2, G=3, F=3),
]  # fmt: skip


@pytest.mark.parametrize(
    "params", WINDOWS, ids=lambda p: "-".join(str(v) for k, v in p.items() if k != "LIST")
)
def test_window(params, tmp_path):
    run_suite("bnc_window", "cocotb_window", tmp_path, params)


def test_framebuf(tmp_path):
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path, dict(W=13, DEPTH=5))
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "d1", dict(W=3, DEPTH=1))
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "b", dict(W=13, DEPTH=5, BLOCK=1))
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "r3", dict(W=7, DEPTH=5, BANKS=3))
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "r4", dict(W=7, DEPTH=8, BANKS=4))
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "r3b",
              dict(W=7, DEPTH=6, BANKS=3, BLOCK=1))  # fmt: skip
    run_suite("bnc_framebuf", "cocotb_framebuf", tmp_path / "r3d1", dict(W=3, DEPTH=1, BANKS=3))


@pytest.mark.parametrize(
    "params", [dict(TW=6, KW=4), dict(TW=13, KW=17), dict(TW=7, KW=5, K=3, VW=15)], ids=str
)
def test_threshold(params, tmp_path):
    run_suite("bnc_threshold", "cocotb_threshold", tmp_path, params)


@pytest.mark.parametrize(
    "params", [dict(C=11, AND_MASK=0b10110011010), dict(C=5, W=3, AND_MASK=0b01101)], ids=str
)
def test_bitpool(params, tmp_path):
    run_suite("bnc_bitpool", "cocotb_bitpool", tmp_path, params)


@pytest.mark.parametrize("params", [dict(C=6, W=1, OW=6), dict(C=4, W=3, OW=8)], ids=str)
def test_sumpool(params, tmp_path):
    run_suite("bnc_sumpool", "cocotb_sumpool", tmp_path, params)


@pytest.mark.parametrize(
    "params",
    [dict(W=12, WORDS=7), dict(W=64, WORDS=1), dict(W=12, WORDS=7, BLOCK=1),
     dict(W=64, WORDS=3, BLOCK=1)],
    ids=str,
)  # fmt: skip
def test_stream_ends(params, tmp_path):
    tb = verilator.HW.parent / "tests" / "hw" / "bnc_stream_tb.v"
    run_suite("bnc_stream_tb", "cocotb_stream", tmp_path, params, [*verilator.hw_sources(), tb])
