"""Multi-bit forms on Cortex-M: a multi-level layer is one kernel (its masks counted over one
window walk, no partial plane), code tensors are held at their bit width (bit planes of up to
``CODE_PLANES`` bits where the estimates find them faster, else their narrowest integer type),
the plane's C width covers its bound, and the result is bit-exact under qemu for both
schedules and both code forms."""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bnc.backends import core
from bnc.backends.c.lower import PoolView
from bnc.backends.mcu import emit as emit_module
from bnc.backends.mcu.lower import CODE_PLANES, BitConv, CodeConv, coefficients
from bnc.backends.mcu.lower import lower as mcu_lower
from bnc.backends.mcu.toolchain import CORTEX_M4, build
from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph
from bnc.ir.passes import lower

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require_tool  # noqa: E402
from differential import check  # noqa: E402
from irgen import _Dag, batch_norm, quant_conv, random_input  # noqa: E402


def chain(seed: int) -> Graph:
    """8-bit input → 2-bit int weights, 2-bit codes (planes) → max-pool of planes → ternary,
    8-bit signed codes (int8) → codebook over int8, no padding, 3-bit signed codes (planes,
    lo = -4) → 1x1 multibit over planes (compact window), Sign → codebook classifier. The
    planes are those of ``planes=CODE_PLANES``; by the estimates (small C) they are int8."""
    rng = np.random.default_rng(seed)
    g = _Dag((2, 10, 9))
    x = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)

    def layer(x: str, name: str, c: int, o: int, k: int, pad: int, form: str) -> str:
        conv = quant_conv(rng, name, c, o, k, 1, pad, 0.6, form)
        return g.add(batch_norm(rng, f"{name}.bn", o), g.add(conv, x))

    x = g.add(O.Quantize("a1", 0.4, 0, 0, 3), layer(x, "c1", 2, 8, 3, 1, "int"))
    x = g.add(O.MaxPool2d("p1", (2, 2), (2, 2)), x)
    x = g.add(O.Quantize("a2", 0.02, 0, -128, 127), layer(x, "c2", 8, 33, 3, 1, "ternary"))
    x = g.add(O.Quantize("a3", 0.3, 0, -4, 3), layer(x, "c3", 33, 16, 3, 0, "codebook"))
    x = g.add(O.Sign("a4"), layer(x, "c4", 16, 16, 1, 0, "multibit"))
    x = g.add(O.Flatten("flat"), x)
    fc = quant_conv(rng, "fc", g.types[x].channels, 5, 1, 1, 0, 0.6, "codebook")
    assert isinstance(fc, O.QuantConv2d)
    x = g.add(O.QuantLinear("fc", fc.index[:, :, 0, 0], fc.levels, fc.bias), x)
    return g.graph(g.add(batch_norm(rng, "bn_out", 5), x))


def test_a_multi_level_layer_is_one_kernel() -> None:
    graph = lower(chain(0))
    planes = [n for n in graph.nodes if isinstance(n.op, O.MultiThreshold | O.Requantize
                                                   | O.Threshold | O.OutputAffine)]  # fmt: skip
    view = mcu_lower(graph, "m")
    convs = [v for v in view.layers if isinstance(v, BitConv | CodeConv)]
    assert len(convs) == len(planes) == 5
    assert [v.masks for v in convs] == [len(n.args) for n in planes]
    assert max(v.masks for v in convs) > 1
    assert view.plane_words == 0 and view.arena.plane_bytes == 0


def test_codes_are_held_at_their_bit_width() -> None:
    graph = lower(chain(0))
    view = mcu_lower(graph, "m", planes=CODE_PLANES)
    c1, c2, c3, c4, fc = (v for v in view.layers if isinstance(v, BitConv | CodeConv))
    assert isinstance(c1, CodeConv) and c1.src_type == "uint8_t"  # the input quantizer's codes
    assert c1.codes is not None and (c1.codes.planes, c1.codes.dst_type) == (2, "uint32_t")
    assert isinstance(c2, BitConv) and (c2.planes_in, c2.wj, c2.off) == (2, (1, 2), 0)
    assert c2.codes is not None and (c2.codes.planes, c2.codes.dst_type) == (0, "int8_t")
    assert isinstance(c3, CodeConv) and c3.src_type == "int8_t"
    assert isinstance(c4, BitConv) and (c4.planes_in, c4.off, c4.compact) == (3, -4, True)
    assert isinstance(fc, BitConv) and fc.wj == (2,) and fc.plane_out
    pool = next(v for v in view.layers if isinstance(v, PoolView) and v.planes)
    assert pool.planes == 2
    ints = mcu_lower(graph, "m", planes=0)
    c1, c2, c3, c4, _ = (v for v in ints.layers if isinstance(v, BitConv | CodeConv))
    assert [v.src_type for v in (c2, c3, c4)] == ["int8_t"] * 3  # type: ignore[union-attr]
    # the tensors and the layers' scratch take less than the tensors alone with int32 codes
    sched = core.schedule(graph, True, True, CODE_PLANES)
    wide = sum(4 * (t.units() if t.storage is core.Storage.BITS else t.c * t.shape[1] * t.shape[2])
               for t in sched.tensors if not t.output)  # fmt: skip
    assert max(view.arena.per_tensor, ints.arena.per_tensor) < wide


def over_codes(bits: int, form: str, share: float) -> Graph:
    """A 64-channel layer of weights ``form`` over ``bits``-bit codes."""
    rng = np.random.default_rng(bits)
    g = _Dag((3, 8, 8))
    x = g.add(O.QuantizeInput("in", 1 / 255, 0, 255), INPUT)
    conv = quant_conv(rng, "c1", 3, 64, 3, 1, 1, 0.5, "int")
    x = g.add(O.Quantize("a1", 0.1, 0, 0, (1 << bits) - 1), g.add(batch_norm(rng, "bn1", 64),
                                                                  g.add(conv, x)))  # fmt: skip
    conv = quant_conv(rng, "c2", 64, 64, 3, 1, 1, share, form)
    x = g.add(O.Sign("a2"), g.add(batch_norm(rng, "bn2", 64), g.add(conv, x)))
    fc = O.BinaryLinear(
        "fc", np.ones((4, 64 * 64), dtype=bool), np.zeros(4), np.ones(4), np.zeros(4)
    )  # fmt: skip (every weight 1: every channel is read)
    return g.graph(g.add(fc, g.add(O.Flatten("flat"), x)))


def test_bit_planes_where_they_count_faster() -> None:
    """Two dense masks over 2-bit codes count planes (4 counts a word); the sparse one-hot
    masks of a codebook over 4-bit codes add integer codes (4 counts a word per mask against a
    few ones)."""
    dense = mcu_lower(lower(over_codes(2, "ternary", 0.9)), "m")
    layer = [v for v in dense.layers if isinstance(v, BitConv | CodeConv)][1]
    assert isinstance(layer, BitConv) and (layer.masks, layer.planes_in) == (2, 2)
    assert dense.code_planes == 2
    sparse = mcu_lower(lower(over_codes(4, "codebook", 0.3)), "m")
    layer = [v for v in sparse.layers if isinstance(v, BitConv | CodeConv)][1]
    assert isinstance(layer, CodeConv) and layer.masks >= 2 and layer.src_type == "int8_t"
    assert sparse.code_planes == 0


def test_plane_width_covers_the_bound() -> None:
    """int32 math only where no partial sum of t*T + sum_m s[m]*S_m + c can leave int32; the
    coefficients are stored in the narrowest type holding them."""
    sched = core.schedule(lower(chain(1)), True, True, CODE_PLANES)
    step = next(s for s in sched.steps if isinstance(s, core.ConvStep) and len(s.masks) > 1)
    o = step.geo.o
    small = dataclasses.replace(
        step,
        t=(1,) * o,
        s=(1,) * o,
        c=(0,) * o,
        more=tuple(dataclasses.replace(m, s=(-3,) * o) for m in step.more),
    )
    assert (coefficients(small).store, coefficients(small).math) == ("int16_t", "int32_t")
    # T alone fits, the masks' S terms push the sum past int32
    n = step.geo.c * step.geo.kh * step.geo.kw
    lo, hi = step.value_range
    t = (1 << 30) // (n * max(-lo, hi))
    ones = int(step.more[0].weight.reshape(o, -1).sum(axis=1).min())
    s = (1 << 31) // max(1, ones * max(-lo, hi)) + 1
    big = dataclasses.replace(
        small, t=(t,) * o, more=tuple(dataclasses.replace(m, s=(s,) * o) for m in step.more)
    )
    assert coefficients(big).math == "int64_t" and coefficients(big).store == "int32_t"
    assert coefficients(dataclasses.replace(small, c=(1 << 40,) * o)).store == "int64_t"


@pytest.mark.parametrize(("target", "schedule", "planes"), [
    ("cortex-m4", "dense", CODE_PLANES), ("cortex-m4", "sparse", CODE_PLANES),
    ("cortex-m4", "sparse", 0), ("cortex-m4", "sliced", 0), ("cortex-m7", "sliced", CODE_PLANES),
    ("cortex-m7", "auto", None)])  # fmt: skip
def test_chain_is_bit_exact(
    target: str, schedule: str, planes: int | None, tmp_path: Path, monkeypatch
) -> None:
    for tool in ("make", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    monkeypatch.setattr(emit_module, "lower", partial(mcu_lower, planes=planes))
    for seed in range(2):
        graph = lower(chain(seed))
        folder = tmp_path / str(seed)
        folder.mkdir()
        check(graph, random_input(graph, 8, seed), target, folder, schedule=schedule)


@pytest.mark.parametrize("cflags", ["-O0", "-Os", "-O3"])
def test_strict_build_every_level(cflags: str, tmp_path: Path, monkeypatch) -> None:
    """Every multi-bit kernel compiles under -Wall -Wextra -Werror -pedantic at every level."""
    for tool in ("make", "arm-none-eabi-gcc"):
        require_tool(tool)
    for planes, schedule in (
        (CODE_PLANES, "dense"), (CODE_PLANES, "sparse"), (0, "sliced"), (0, "auto")
    ):  # fmt: skip
        monkeypatch.setattr(emit_module, "lower", partial(mcu_lower, planes=planes))
        folder = tmp_path / f"{planes}-{schedule}"
        folder.mkdir()
        emit_module.emit(lower(chain(1)), folder, "m", CORTEX_M4, schedule)
        build(folder, (f"CFLAGS={cflags}",))
