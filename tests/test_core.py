"""The shared lowering core: the walk over random graphs and the liveness memory plan."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bnc.backends import core
from bnc.ir.passes import lower

sys.path.insert(0, str(Path(__file__).parent))
from irgen import random_dag, random_graph  # noqa: E402


def _pool(t: core.Tensor) -> str | None:
    if t.output:
        return None
    return "planes" if t.storage is core.Storage.PLANE else "words"


def _size(t: core.Tensor) -> int:
    return t.units() * (8 if t.storage is core.Storage.PLANE else 4)


def _check_plan(sched: core.Schedule, scratch: dict[int, tuple[str, int]]) -> core.MemoryPlan:
    plan = core.plan_memory(sched, _pool, _size, scratch)
    regions = list(plan.regions.values())

    def pool_of(r: core.Region) -> str | None:
        return scratch[r.key[0]][0] if isinstance(r.key, tuple) else _pool(r.key)

    for r in regions:
        pool = pool_of(r)
        assert r.offset % core.ALIGN == 0 and r.size % core.ALIGN == 0
        assert 0 <= r.offset and r.offset + r.size <= plan.sizes[pool]
    for a in regions:
        for b in regions:
            if a is b or pool_of(a) != pool_of(b):
                continue
            live_together = not (a.last < b.first or b.last < a.first)
            apart = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
            assert apart or not live_together, (a, b)
    # every tensor a step reads is live at that step, and so is what it writes
    for step in sched.steps:
        for t in (*sched.reads(step), step.dst):
            if _pool(t) is not None:
                r = plan.regions[t]
                assert r.first <= step.index <= r.last
    return plan


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), blocks=st.integers(0, 5), scratch=st.integers(0, 3000))
def test_memory_plan_never_overlaps_live_buffers(seed: int, blocks: int, scratch: int) -> None:
    sched = core.schedule(lower(random_dag(seed, blocks)))
    conv = [s.index for s in sched.steps if isinstance(s, core.ConvStep)]
    _check_plan(sched, {i: ("words", scratch * (i % 3)) for i in conv})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), scratch=st.integers(0, 3000))
def test_memory_plan_of_a_chain_is_the_lower_bound(seed: int, scratch: int) -> None:
    """For a chain the plan takes exactly the largest ``in + scratch + out`` of a layer."""
    sched = core.schedule(lower(random_graph(seed)))
    conv = {s.index: ("words", scratch) for s in sched.steps}
    plan = _check_plan(sched, conv)
    rnd = lambda v: (v + 7) // 8 * 8  # noqa: E731
    need = [
        sum(rnd(_size(t)) for t in (*sched.reads(s), s.dst) if _pool(t) == "words") + rnd(scratch)
        for s in sched.steps
    ]
    assert plan.sizes["words"] == max(need)


def test_fan_out_keeps_a_tensor_alive_until_its_last_reader() -> None:
    for seed in range(200):
        sched = core.schedule(lower(random_dag(seed, 4)))
        shared = [t for t in sched.tensors if len(sched.readers(t)) > 1]
        if shared:
            break
    else:
        raise AssertionError("no random graph with fan-out")
    plan = _check_plan(sched, {})
    t = shared[0]
    assert plan.regions[t].last == max(s.index for s in sched.readers(t))


def test_residual_layers_add_a_partial_plane() -> None:
    for seed in range(200):
        sched = core.schedule(lower(random_dag(seed, 3)))
        partial = [s for s in sched.steps if isinstance(s, core.ConvStep) and s.acc_in]
        if partial:
            break
    else:
        raise AssertionError("no random graph with a residual add")
    step = partial[0]
    writer = next(s for s in sched.steps if s.dst is step.acc_in)
    assert writer.mode is core.Mode.PLANE and writer.index < step.index
    assert step.acc_in.storage is core.Storage.PLANE


def test_differential_helper_names_the_layer_element_and_stages() -> None:
    """The helper every target's tests use fails on one wrong accumulator and says where."""
    import numpy as np
    import pytest
    from differential import assert_equal
    from irgen import random_input

    from bnc.ir import interpreter as interp

    graph = lower(random_dag(5, 3))
    x = random_input(graph, 4, 5)
    got = np.asarray(interp.run(graph, x)).reshape(4, -1).copy()
    assert_equal(graph, x, got, "c")
    got[2, 1] += 1
    with pytest.raises(AssertionError) as err:
        assert_equal(graph, x, got, "c")
    text = str(err.value)
    assert "layer 'fc" in text and "sample 2" in text and "T[" in text and "interpreter=" in text


def test_identity_shortcuts_ride_on_the_layer() -> None:
    """A bit shortcut is no step and no partial plane: the layer adds +-s[o] by its bit."""
    for seed in range(300):
        graph = lower(random_dag(seed, 3))
        sched = core.schedule(graph)
        riding = [s for s in sched.steps if isinstance(s, core.ConvStep) and s.bit_adds]
        if riding:
            break
    else:
        raise AssertionError("no random graph with an identity block")
    step = riding[0]
    assert step.acc_in is None or all(b.src is not step.acc_in for b in step.bit_adds)
    shortcut = step.bit_adds[0].src
    assert shortcut.storage is core.Storage.BITS and shortcut in sched.reads(step)
    plan = core.plan_memory(sched, _pool, _size)
    assert plan.regions[shortcut].last >= step.index  # kept alive for the add
