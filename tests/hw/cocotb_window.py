"""cocotb: bnc_window issues every (pixel, pass, tap, chunk) read in order, one per cycle, or
with a step list (N > 0) the listed steps of each pixel."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


def _width(n):
    return max(1, (n - 1).bit_length())


def steps(kh, kw, g, f, n, table):
    """Each pixel's steps (pass, ky, kx, chunk, first, last): all of them, or the N entries
    of the packed list ``table`` ({last, first, chunk, kx, ky} from the lowest bit)."""
    if n == 0:
        return [
            (p, ky, kx, c, int(ky == kx == c == 0), int((ky, kx, c) == (kh - 1, kw - 1, f - 1)))
            for p in range(g) for ky in range(kh) for kx in range(kw) for c in range(f)
        ]  # fmt: skip
    yw, xw, fw = _width(kh), _width(kw), _width(f)
    ew = yw + xw + fw + 2
    out, p = [], 0
    for i in range(n):
        e = table >> (i * ew)
        ky, kx = e & ((1 << yw) - 1), (e >> yw) & ((1 << xw) - 1)
        c = (e >> (yw + xw)) & ((1 << fw) - 1)
        first, last = (e >> (ew - 2)) & 1, (e >> (ew - 1)) & 1
        out.append((p, ky, kx, c, first, last))
        p += last
    return out


def expected(ih, iw, kh, kw, sh, sw, ph, pw, g, f, n, table):
    oh, ow = (ih + 2 * ph - kh) // sh + 1, (iw + 2 * pw - kw) // sw + 1
    walk = steps(kh, kw, g, f, n, table)
    out = []
    for oy in range(oh):
        for ox in range(ow):
            for i, (p, ky, kx, c, first, last) in enumerate(walk):
                iy, ix = oy * sh + ky - ph, ox * sw + kx - pw
                inside = 0 <= iy < ih and 0 <= ix < iw
                row = i if n else (p * kh * kw + ky * kw + kx) * f + c
                addr = iy * iw + ix if inside else 0
                out.append((addr, int(inside), first, last, row, p, c))
    return out


@cocotb.test()
async def walks_one_frame_twice(dut):
    names = ("IH", "IW", "KH", "KW", "SH", "SW", "PH", "PW", "G", "F", "N", "LIST")
    want = expected(*(int(getattr(dut, n).value) for n in names))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    for frame in range(2):
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        got = []
        while True:
            await ReadOnly()
            if int(dut.issue.value):
                got.append(
                    tuple(
                        int(getattr(dut, s).value)
                        for s in ("addr", "tap_in", "first", "last", "widx", "grp", "chk")
                    )
                )
                if int(dut.frame_last.value):
                    assert len(got) == len(want), f"frame_last after {len(got)} reads"
            elif got:
                break
            await RisingEdge(dut.clk)
        if got != want:
            pairs = zip(got, want + [None] * len(got), strict=False)
            first_bad = next(i for i, (a, b) in enumerate(pairs) if a != b)
            raise AssertionError(f"frame {frame}: first difference at read {first_bad}")
        await RisingEdge(dut.clk)
