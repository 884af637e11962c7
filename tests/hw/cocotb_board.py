"""cocotb: a board top (BNC_SIM: the oscillator pin clocks the design) takes frames on its
serial input and sends the accumulators back on its serial output; the test feeds the frames
of board_vectors.json (in the run folder) and checks every byte that comes back."""

import json
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


async def send(dut, clk, data: list[int], clks: int) -> None:
    for byte in data:
        for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
            dut.ftdi_txd.value = bit
            await ClockCycles(clk, clks)


async def receive(dut, clk, n: int, clks: int) -> list[int]:
    out = []
    for _ in range(n):
        while int(dut.ftdi_rxd.value) == 1:
            await RisingEdge(clk)
        await ClockCycles(clk, clks // 2)
        assert int(dut.ftdi_rxd.value) == 0, "a glitch, not a start bit"
        value = 0
        for i in range(8):
            await ClockCycles(clk, clks)
            value |= int(dut.ftdi_rxd.value) << i
        await ClockCycles(clk, clks)
        assert int(dut.ftdi_rxd.value) == 1, "no stop bit"
        out.append(value)
    return out


@cocotb.test()
async def frames_round_trip(dut):
    vec = json.loads(Path("board_vectors.json").read_text())
    clk = getattr(dut, vec["clock_pin"])
    clks = int(vec["clks"])
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.ftdi_txd.value = 1
    await ClockCycles(clk, 40)  # the reset after lock
    want = [b for frame in vec["expected"] for b in frame]
    rx = cocotb.start_soon(receive(dut, clk, len(want), clks))
    for frame in vec["frames"]:
        await send(dut, clk, frame, clks)
    got = await rx
    if got != want:
        pairs = zip(got, want, strict=True)
        first = next(i for i, (a, b) in enumerate(pairs) if a != b)
        raise AssertionError(f"first difference at byte {first} of {len(want)}")
    assert int(dut.led.value) == len(vec["frames"]) % (1 << len(dut.led))
