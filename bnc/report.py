"""Text for ``bnc inspect`` and ``bnc report``: the per-layer table and totals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bnc.ir.analysis import LayerInfo, layer_table
from bnc.ir.graph import Graph
from bnc.ir.passes.dead import DeadChannelInfo, Kept, Why, removed_channels

if TYPE_CHECKING:
    from bnc.api import CompiledModel

HEADER = (
    "layer",
    "op",
    "input",
    "output",
    "bits",
    "beta %",
    "zero %",
    "one-hot %",
    "dense %",
    "MACs",
    "weight B",
    "acc bits",
)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else "-"


def _row(r: LayerInfo) -> tuple[str, ...]:
    k = r.kernels
    shape = lambda t: "x".join(map(str, t.shape))  # noqa: E731
    if k is None:
        sparse = ("-", "-", "-", "-")
    else:
        sparse = (
            _pct(k.beta_weights, k.weights),
            _pct(k.zero, k.kernels),
            _pct(k.one_hot, k.kernels),
            _pct(k.dense, k.kernels),
        )
    op = "BinaryConv2d" if r.op == "SumConv2d" else r.op
    return (
        r.name,
        op,
        shape(r.in_type),
        shape(r.out_type),
        r.operand_bits,
        *sparse,
        f"{r.macs:,}" if r.macs else "-",
        f"{r.weight_bytes:,}" if r.weight_bytes else "-",
        str(r.acc_bits) if r.acc_bits else "-",
    )


def totals(rows: list[LayerInfo]) -> dict[str, float]:
    weights = sum(r.kernels.weights for r in rows if r.kernels)
    beta = sum(r.kernels.beta_weights for r in rows if r.kernels)
    return {
        "binary_weights": weights,
        "alpha_share": 1.0 - beta / weights if weights else 0.0,
        "macs": sum(r.macs for r in rows),
        "weight_bytes": sum(r.weight_bytes for r in rows),
    }


def format_table(rows: list[LayerInfo], markdown: bool = False) -> str:
    cells = [HEADER, *(_row(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "---|" * len(HEADER))
        return "\n".join(lines) + "\n"
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            c.rjust(w) if i >= 4 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def summary(rows: list[LayerInfo]) -> str:
    t = totals(rows)
    return (
        f"binary weights: {t['binary_weights']:,}, at alpha (b = 0): {100 * t['alpha_share']:.1f} %"
        f"; MACs per inference: {t['macs']:,}; packed weights: {t['weight_bytes']:,} bytes\n"
    )


def _ranges(channels: list[int]) -> str:
    """``0-2, 5, 7-8``: sorted channel indices with runs joined."""
    runs: list[list[int]] = []
    for c in sorted(channels):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _by_reason(pairs: tuple | list, order: type[Why] | type[Kept]) -> list[tuple[str, list[int]]]:
    """``(reason text, channels)`` in the order the enum lists its reasons."""
    return [
        (r.value, [c for c, why in pairs if why is r])
        for r in order
        if any(why is r for _, why in pairs)
    ]


def dead_channels_text(info: DeadChannelInfo | None) -> str:
    """Per layer, the output channels ``DropDeadChannels`` removed and why, and the constant
    channels it kept (original indices); empty when there are none."""
    if info is None or not info.layers:
        return ""
    kept = f", {info.kept} constant kept" if info.kept else ""
    lines = [
        f"dead channels: {info.removed} removed{kept} (bit-exact: a removed constant is folded"
        " into its readers' thresholds)"
    ]
    for r in info.layers:
        const = [(c, w) for c, w in r.removed if w is not Why.UNREAD]
        kinds = _by_reason(const, Why)
        parts = []
        if const:
            detail = ", ".join(why if len(kinds) == 1 else f"{len(cs)} {why}" for why, cs in kinds)
            parts.append(f"{len(const)} constant: {detail}")
        if len(const) < len(r.removed):
            parts.append(f"{len(r.removed) - len(const)} unread")
        head = f"  {r.layer}: {len(r.removed)} of {r.channels} output channels removed"
        lines.append(head + (f" ({', '.join(parts)})" if parts else ""))
        for why, cs in _by_reason(r.removed, Why):
            lines.append(f"    removed, {why}: {_ranges(cs)}")
        for why, cs in _by_reason(r.kept, Kept):
            lines.append(f"    kept constant, {why}: {_ranges(cs)}")
    return "\n".join(lines) + "\n"


def inspect_text(lowered: Graph) -> str:
    rows = layer_table(lowered)
    return format_table(rows) + summary(rows) + dead_channels_text(removed_channels(lowered))


def render_report(model: CompiledModel, view: object = None) -> str:
    """The report; ``view`` is the fpga target's view model (the C targets return none)."""
    rows = layer_table(model.lowered)
    shape = ",".join(map(str, model.input_shape))
    return (
        f"# bnc report: {model.name}\n\n"
        f"Target `{model.target}`, input {shape} (float32, batch first).\n\n"
        f"{summary(rows)}\n"
        "Kernel classes: a kernel is one output channel's taps on one input channel; zero"
        " kernels cost nothing, one-hot kernels are a shifted read, dense kernels need"
        " AND-popcount. `bits` is the input's bits x the layer's binary weight masks (a"
        " multi-level layer's masks are counted together). `acc bits` is the proven width of"
        " the threshold / output plane.\n\n"
        f"{format_table(rows, markdown=True)}"
        + (target_section(model, view) if view is not None else "")
    )


def fp32_bytes(graph: Graph) -> int:
    """Bytes of the model's parameters in fp32: every array of the import-level ops."""
    import numpy as np

    return 4 * sum(
        v.size for op in graph.ops for v in vars(op).values() if isinstance(v, np.ndarray)
    )


def target_section(model: CompiledModel, view: object) -> str:
    """The target's own section: the fpga hardware plan or the microcontroller memory plan."""
    from bnc.backends.mcu.lower import McuView

    if isinstance(view, McuView):
        from bnc.backends.mcu.report import render as render_mcu

        return "\n" + render_mcu(view, fp32_bytes(model.graph))
    from bnc.backends.fpga.report import render

    return "\n" + render(view)
