"""cocotb: bnc_sum adds N packed W-bit values (two's complement when SIGNED)."""

import random

import cocotb
from cocotb.triggers import Timer


def _value(raw: int, w: int, signed: bool) -> int:
    return raw - (1 << w) if signed and raw >> (w - 1) else raw


@cocotb.test()
async def sums_random_vectors(dut):
    n, w, signed = int(dut.N.value), int(dut.W.value), bool(int(dut.SIGNED.value))
    ow = int(dut.OW.value)
    rng = random.Random(n * 1000 + w)
    cases = [0, (1 << (n * w)) - 1] + [rng.getrandbits(n * w) for _ in range(200)]
    for packed in cases:
        dut.values.value = packed
        await Timer(1, unit="ns")
        want = sum(_value((packed >> (i * w)) & ((1 << w) - 1), w, signed) for i in range(n))
        got = int(dut.total.value)
        got = got - (1 << ow) if signed and got >> (ow - 1) else got
        assert got == want, f"N={n} W={w} in={packed:#x}: got {got}, want {want}"
