"""Model files and modules → the import-level IR graph."""

from bnc.frontend.load import Imported, from_module, load_model, parse_input_shape

__all__ = ["Imported", "from_module", "load_model", "parse_input_shape"]
