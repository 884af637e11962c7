"""bnc: a deployment compiler for binarized, low-bit and pruned neural networks.

``bnc.compile(model_or_path, example_input, target="c")`` returns a ``CompiledModel`` with
``.run(x)``, ``.save(folder)`` and ``.report()`` (DESIGN §3);
``bnc.quantize(float_model, calibration, weights=K)`` turns a float model into a low-bit one
(``bnc quantize``). The training layers are in ``bnc.nn``. The API is imported on first
use, so that ``import bnc.ir`` loads neither it nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bnc.errors import BncError

if TYPE_CHECKING:
    from bnc.api import CompiledModel
    from bnc.api import compile as compile  # noqa: A004
    from bnc.quantization.api import Quantized, quantize

__version__ = "0.1.0"
__all__ = ["BncError", "CompiledModel", "Quantized", "compile", "quantize"]


def __getattr__(name: str) -> Any:
    if name in ("compile", "CompiledModel"):
        from bnc import api

        return getattr(api, name)
    if name in ("quantize", "Quantized"):
        from bnc.quantization import api as quantization_api

        return getattr(quantization_api, name)
    raise AttributeError(f"module 'bnc' has no attribute {name!r}")
