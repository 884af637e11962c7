"""Render the microcontroller view model: the library (model.h, model.c), the qemu example
(main.c, startup.c, mps2.ld, Makefile) and the folder's README (byte-for-byte deterministic)."""

from __future__ import annotations

from pathlib import Path

from bnc import templates
from bnc.backends.c.emit import _c_ident
from bnc.backends.mcu.lower import McuView, lower
from bnc.backends.mcu.toolchain import McuTarget
from bnc.ir.graph import Graph

FILES = ("model.h", "model.c", "main.c", "startup.c", "mps2.ld", "Makefile", "README.md")


def emit(
    graph: Graph, out_dir: Path, model_name: str, target: McuTarget, schedule: str = "auto"
) -> McuView:
    view = lower(graph, model_name, schedule)
    env = templates.environment("mcu")
    env.filters["c_ident"] = _c_ident
    for name in FILES:
        text = env.get_template(f"{name}.j2").render(m=view, t=target)
        (out_dir / name).write_text(text, encoding="utf-8")
    return view
