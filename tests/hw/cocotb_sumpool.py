"""cocotb: bnc_sumpool sums each channel over the in-image taps of a window: bits as +1 / -1,
W-bit codes as signed values, into OW-bit two's complement sums."""

import random

import cocotb
from cocotb_bitpool import _fields, feed_windows


@cocotb.test()
async def sums_windows(dut):
    c, w, ow = int(dut.C.value), int(dut.W.value), int(dut.OW.value)
    async for seen in feed_windows(dut, 40, 30, c * w, random.Random(c * 10 + w)):
        vals = [_fields(x, c, w) for x in seen]
        want = [sum((2 * v[ch] - 1) if w == 1 else v[ch] for v in vals) for ch in range(c)]
        assert _fields(int(dut.pooled.value), c, ow) == want
