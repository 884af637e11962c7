"""cocotb: bnc_threshold gives [t*T + s*S + c >= 0] on signed operands."""

import random

import cocotb
from cocotb.triggers import Timer


@cocotb.test()
async def integer_test(dut):
    tw, kw = int(dut.TW.value), int(dut.KW.value)
    rng = random.Random(tw * 100 + kw)
    lo_t, hi_t = -(1 << (tw - 1)), (1 << (tw - 1)) - 1
    lo_k, hi_k = -(1 << (kw - 1)), (1 << (kw - 1)) - 1
    edges = [
        (lo_t, lo_t, lo_k, lo_k, lo_k),
        (hi_t, hi_t, hi_k, hi_k, hi_k),
        (lo_t, hi_t, hi_k, hi_k, 0),
        (0, 0, 0, 0, 0),
        (0, 0, 0, 0, -1),
    ]
    cases = edges + [
        (
            rng.randint(lo_t, hi_t),
            rng.randint(lo_t, hi_t),
            rng.randint(lo_k, hi_k),
            rng.randint(lo_k, hi_k),
            rng.randint(lo_k, hi_k),
        )
        for _ in range(400)
    ]
    for big_t, big_s, t, s, c in cases:
        dut.sum_t.value, dut.sum_s.value = big_t, big_s
        dut.coef_t.value, dut.coef_s.value, dut.coef_c.value = t, s, c
        await Timer(1, unit="ns")
        want = int(t * big_t + s * big_s + c >= 0)
        assert int(dut.bit_out.value) == want, (big_t, big_s, t, s, c)
