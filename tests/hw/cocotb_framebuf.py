"""cocotb: bnc_framebuf hands whole frames from producer to consumer, BANKS banks deep.

Stimulus changes on falling edges and is sampled there, half a cycle after the design's
rising edge."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def ping_pong(dut):
    depth, w, banks = int(dut.DEPTH.value), int(dut.W.value), int(dut.BANKS.value)
    rng = random.Random(1)
    frames = [[rng.getrandbits(w) for _ in range(depth)] for _ in range(2 * banks + 1)]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for s in ("wr_en", "wr_addr", "wr_data", "wr_done", "rd_addr", "rd_done"):
        getattr(dut, s).value = 0
    dut.rst.value = 1
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    assert int(dut.wr_ready.value) == 1 and int(dut.rd_ready.value) == 0

    async def write(frame):
        for a, v in enumerate(frame):
            dut.wr_en.value, dut.wr_addr.value, dut.wr_data.value = 1, a, v
            dut.wr_done.value = int(a == depth - 1)
            await FallingEdge(dut.clk)
        dut.wr_en.value = dut.wr_done.value = 0

    lat = 2 if int(dut.BLOCK.value) else 1  # block RAM reads in two cycles

    async def read():
        got = []
        for a in range(depth + lat):
            if a >= lat:
                got.append(int(dut.rd_data.value))
            dut.rd_addr.value = min(a, depth - 1)
            dut.rd_done.value = int(a == depth + lat - 1)
            await FallingEdge(dut.clk)
        dut.rd_done.value = 0
        return got

    for k in range(banks):
        await write(frames[k])
        assert int(dut.rd_ready.value) == 1
    assert int(dut.wr_ready.value) == 0, "a frame more than the banks must wait for a free one"
    assert await read() == frames[0]
    assert int(dut.wr_ready.value) == 1, "the freed bank takes the next frame"
    for k in range(banks, 2 * banks + 1):  # around the ring again, a frame behind
        await write(frames[k])
        assert await read() == frames[k - banks + 1]
    for k in range(banks + 2, 2 * banks + 1):
        assert await read() == frames[k]
    assert int(dut.rd_ready.value) == 0 and int(dut.wr_ready.value) == 1
