"""cocotb: bnc_bitpool ORs (or, per AND_MASK, ANDs) the in-image taps of each window; of
W-bit codes it keeps the signed maximum (minimum per AND_MASK)."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


def _fields(v: int, c: int, w: int) -> list[int]:
    """The C signed W-bit fields of ``v``, channel 0 in the low bits."""
    out = []
    for k in range(c):
        f = (v >> (k * w)) & ((1 << w) - 1)
        out.append(f - (1 << w) if w > 1 and f >> (w - 1) else f)
    return out


async def feed_windows(dut, count: int, longest: int, width: int, rng: random.Random):
    """Feed ``count`` windows of 1 to ``longest`` taps of random ``width``-bit words, some taps
    padded; yield each window's in-image words after its last tap has been taken."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.en.value = 0
    await FallingEdge(dut.clk)
    for _ in range(count):
        taps = rng.randint(1, longest)
        inside = [rng.random() < 0.7 for _ in range(taps)]
        inside[rng.randrange(taps)] = True  # a window always has one tap in the image
        xs = [rng.getrandbits(width) for _ in range(taps)]
        for k in range(taps):
            dut.en.value, dut.first.value = 1, int(k == 0)
            dut.tap_in.value, dut.x.value = int(inside[k]), xs[k]
            await FallingEdge(dut.clk)
        dut.en.value = 0
        await FallingEdge(dut.clk)
        yield [x for x, ok in zip(xs, inside, strict=True) if ok]


@cocotb.test()
async def pools_windows(dut):
    c, w, mask = int(dut.C.value), int(dut.W.value), int(dut.AND_MASK.value)
    async for seen in feed_windows(dut, 60, 9, c * w, random.Random(c * 10 + w)):
        vals = [_fields(x, c, w) for x in seen]
        want = [(min if (mask >> ch) & 1 else max)(v[ch] for v in vals) for ch in range(c)]
        assert _fields(int(dut.pooled.value), c, w) == want
