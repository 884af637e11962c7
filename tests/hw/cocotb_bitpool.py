"""cocotb: bnc_bitpool ORs (or, per AND_MASK, ANDs) the in-image taps of each window."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


@cocotb.test()
async def pools_windows(dut):
    c, mask = int(dut.C.value), int(dut.AND_MASK.value)
    rng = random.Random(c)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.en.value = 0
    await FallingEdge(dut.clk)
    for _ in range(60):
        taps = rng.randint(1, 9)
        inside = [rng.random() < 0.7 for _ in range(taps)]
        inside[rng.randrange(taps)] = True  # a window always has one tap in the image
        xs = [rng.getrandbits(c) for _ in range(taps)]
        for k in range(taps):
            dut.en.value, dut.first.value = 1, int(k == 0)
            dut.tap_in.value, dut.x.value = int(inside[k]), xs[k]
            await FallingEdge(dut.clk)
        dut.en.value = 0
        await FallingEdge(dut.clk)
        ored = 0
        anded = (1 << c) - 1
        for x, ok in zip(xs, inside, strict=True):
            if ok:
                ored |= x
                anded &= x
        want = (anded & mask) | (ored & ~mask & ((1 << c) - 1))
        assert int(dut.pooled.value) == want
