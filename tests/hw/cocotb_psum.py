"""cocotb: bnc_psum's total is the sum of the N packed W-bit values at the last clock edge,
and does not follow the values between edges."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb_sum import _value


@cocotb.test()
async def sums_a_clock_later(dut):
    n, w, signed = int(dut.N.value), int(dut.W.value), bool(int(dut.SIGNED.value))
    ow = int(dut.OW.value)
    rng = random.Random(n * 1000 + w)
    cases = [0, (1 << (n * w)) - 1] + [rng.getrandbits(n * w) for _ in range(200)]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    def total() -> int:
        got = int(dut.total.value)
        return got - (1 << ow) if signed and got >> (ow - 1) else got

    for k, packed in enumerate(cases):
        dut.values.value = packed
        await RisingEdge(dut.clk)
        await ReadOnly()
        want = sum(_value((packed >> (i * w)) & ((1 << w) - 1), w, signed) for i in range(n))
        assert total() == want, f"N={n} W={w} in={packed:#x}: got {total()}, want {want}"
        await FallingEdge(dut.clk)
        dut.values.value = cases[(k + 1) % len(cases)] ^ packed  # between edges: no effect
        await Timer(1, unit="ns")
        assert total() == want, f"N={n} W={w}: the total changed between clock edges"
