"""cocotb: bnc_framebuf hands whole frames from producer to consumer, two banks deep.

Stimulus changes on falling edges and is sampled there, half a cycle after the design's
rising edge."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def ping_pong(dut):
    depth, w = int(dut.DEPTH.value), int(dut.W.value)
    rng = random.Random(1)
    frames = [[rng.getrandbits(w) for _ in range(depth)] for _ in range(3)]
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

    await write(frames[0])
    assert int(dut.rd_ready.value) == 1
    await write(frames[1])
    assert int(dut.wr_ready.value) == 0, "a third frame must wait for a free bank"
    assert await read() == frames[0]
    assert int(dut.wr_ready.value) == 1, "the freed bank takes the next frame"
    await write(frames[2])
    assert await read() == frames[1]
    assert await read() == frames[2]
    assert int(dut.rd_ready.value) == 0 and int(dut.wr_ready.value) == 1
