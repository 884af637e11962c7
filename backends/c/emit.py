"""Render the C view model into the output folder (byte-for-byte deterministic)."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from bnc import templates
from bnc.backends.c.lower import lower
from bnc.backends.c.toolchain import CTarget
from bnc.ir.graph import Graph

FILES = {
    "model.h": "model.h.j2",
    "model.c": "model.c.j2",
    "main.c": "main.c.j2",
    "Makefile": "Makefile.j2",
    "CMakeLists.txt": "CMakeLists.txt.j2",
}
SIMD = ("bnc_simd.h", "bnc_simd.h.j2")  # only where a layer uses it


def _c_ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def environment() -> jinja2.Environment:
    env = templates.environment("c")
    env.filters["c_ident"] = _c_ident
    return env


def emit(
    graph: Graph,
    out_dir: Path,
    model_name: str,
    target: CTarget,
    schedule: str = "auto",
    threads: int = 1,
) -> None:
    view = lower(graph, model_name, schedule, target.unit, threads)
    env = environment()
    files = dict(FILES)
    if view.simd:
        files[SIMD[0]] = SIMD[1]
    for name, template in files.items():
        text = env.get_template(template).render(m=view, t=target, simd=view.simd)
        (out_dir / name).write_text(text, encoding="utf-8")
