"""bnc: a deployment compiler for binarized, low-bit and pruned neural networks.

``bnc.compile(model_or_path, example_input, target="c")`` returns a ``CompiledModel`` with
``.run(x)``, ``.save(folder)`` and ``.report()`` (DESIGN §3). The training layers are in
``bnc.nn``.
"""

from bnc.api import CompiledModel
from bnc.api import compile as compile  # noqa: A004
from bnc.errors import BncError

__version__ = "0.1.0"
__all__ = ["BncError", "CompiledModel", "compile"]
