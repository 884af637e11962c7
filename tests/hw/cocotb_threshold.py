"""cocotb: bnc_threshold gives [t*T + sum_k s_k*S_k + c >= 0] and the plane itself on signed
operands, K masks packed in sum_s and coef_s."""

import random

import cocotb
from cocotb.triggers import Timer


def _pack(values: list[int], w: int) -> int:
    return sum((v & ((1 << w) - 1)) << (k * w) for k, v in enumerate(values))


@cocotb.test()
async def integer_test(dut):
    tw, kw, k = int(dut.TW.value), int(dut.KW.value), int(dut.K.value)
    rng = random.Random(tw * 100 + kw * 10 + k)
    lo_t, hi_t = -(1 << (tw - 1)), (1 << (tw - 1)) - 1
    lo_k, hi_k = -(1 << (kw - 1)), (1 << (kw - 1)) - 1
    edges = [
        (lo_t, [lo_t] * k, lo_k, [lo_k] * k, lo_k),
        (hi_t, [hi_t] * k, hi_k, [hi_k] * k, hi_k),
        (lo_t, [hi_t] * k, hi_k, [hi_k] * k, 0),
        (0, [0] * k, 0, [0] * k, 0),
        (0, [0] * k, 0, [0] * k, -1),
    ]
    draw = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
    cases = edges + [
        (draw(lo_t, hi_t), [draw(lo_t, hi_t) for _ in range(k)], draw(lo_k, hi_k),
         [draw(lo_k, hi_k) for _ in range(k)], draw(lo_k, hi_k))
        for _ in range(400)
    ]  # fmt: skip
    for big_t, big_s, t, s, c in cases:
        dut.sum_t.value, dut.sum_s.value = big_t, _pack(big_s, tw)
        dut.coef_t.value, dut.coef_s.value, dut.coef_c.value = t, _pack(s, kw), c
        await Timer(1, unit="ns")
        plane = t * big_t + sum(a * b for a, b in zip(s, big_s, strict=True)) + c
        assert int(dut.bit_out.value) == int(plane >= 0), (big_t, big_s, t, s, c)
        assert dut.value.value.to_signed() == plane, (big_t, big_s, t, s, c)
