"""Per-layer rows of ``make bench``: each binary layer shape timed alone in both schedules and
on each x86 vector path this machine runs, next to the cost model's prediction
(``bnc.backends.c.lower.layer_cost``); a wrong ranking (the model picks the slower schedule by
more than the noise) is printed and fails the bench.

    .venv/bin/python bench/layers.py        (also part of make bench, bench/run.py)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PROFILE, build_host, conv_graph, time_artifact  # noqa: E402
from bnc.backends.c.lower import layer_cost, steps_of  # noqa: E402

# (label, C, H, O, kernel, stride, pad, alpha share)
SHAPES = [
    ("56²×64→64 3×3", 64, 56, 64, 3, 1, 1, 0.5),
    ("56²×64→64 3×3, 95 % α", 64, 56, 64, 3, 1, 1, 0.95),
    ("28²×64→64 3×3, 95 % α", 64, 28, 64, 3, 1, 1, 0.95),
    ("28²×128→128 3×3", 128, 28, 128, 3, 1, 1, 0.5),
    ("28²×128→128 3×3, 99 % α", 128, 28, 128, 3, 1, 1, 0.99),
    ("14²×64→128 3×3, 95 % α", 64, 14, 128, 3, 1, 1, 0.95),
    ("14²×128→128 3×3, 95 % α", 128, 14, 128, 3, 1, 1, 0.95),
    ("7²×512→512 3×3, 95 % α", 512, 7, 512, 3, 1, 1, 0.95),
    ("28²×32→64 3×3 stride 2", 32, 28, 64, 3, 2, 1, 0.5),
    ("7²×128→256 fully connected, 95 % α", 128, 7, 256, 7, 1, 0, 0.95),
    ("56²×64→10 fully connected, 95 % α", 64, 56, 10, 56, 1, 0, 0.95),
]
# the x86 vector paths: (name, ARCH flags, cost-model ISA, /proc/cpuinfo flag it needs)
PATHS = [
    ("avx512 vpopcntdq", None, "avx512", "avx512_vpopcntdq"),
    ("avx2", "-march=native -mno-avx512f", "avx2", "avx2"),
]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rows(tmp: Path) -> tuple[list[str], list[str]]:
    """The table and the wrong rankings found."""
    flags = Path("/proc/cpuinfo").read_text()
    paths = [p for p in PATHS if f" {p[3]}" in flags]
    missing = [p[0] for p in PATHS if p not in paths]
    head = "| layer | path | generic: predicted / measured | planar: predicted / measured | pick |"
    out = [head, "| --- | --- | --- | --- | --- |"]
    wrong: list[str] = []
    x_cache: dict[tuple, np.ndarray] = {}
    for label, c, h, o, k, st, pad, share in SHAPES:
        graph = conv_graph(c, h, o, share, kernel=k, stride=st, pad=pad)
        step = steps_of(graph)[0]
        key = (c, h)
        if key not in x_cache:
            x_cache[key] = np.random.default_rng(0).normal(size=(10, c, h, h)).astype(np.float32)
        x = x_cache[key]
        for name, arch, isa, _ in paths:
            say(f"bench: {label}, {name}")
            cells, times = [], {}
            for sched in ("generic", "planar"):
                pred = layer_cost(step, sched, isa)
                if pred is None:
                    cells.append("—")
                    continue
                folder = tmp / f"{label}-{name}-{sched}".replace(" ", "_").replace("%", "")
                build_host(graph, folder, sched, PROFILE, arch)
                t = time_artifact(folder, x, 5, layer=0)
                times[sched] = (pred, t)
                cells.append(f"{pred * 1e6:.0f} / {t * 1e6:.0f} µs")
            pick = min(times, key=lambda s: times[s][0])
            best = min(times, key=lambda s: times[s][1])
            verdict = pick
            if pick != best and times[pick][1] > 1.25 * times[best][1]:
                verdict += (
                    f" (**wrong**: {best} measured {times[pick][1] / times[best][1]:.2f}× faster)"
                )
                wrong.append(f"{label} on {name}")
            out.append(f"| {label} | {name} | {cells[0]} | {cells[1]} | {verdict} |")
    if missing:
        out += ["", f"Paths this machine could not run: {', '.join(missing)}."]
    return out, wrong


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bnc-bench-") as d:
        table, wrong = rows(Path(d))
    print("\n".join(table))
    if wrong:
        print(f"\nwrong rankings: {'; '.join(wrong)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
