"""The algorithm table: what the server can explain with and how. ``entry`` holds the machinery
(AlgorithmEntry, Param, BaselineMode, BuildContext), ``table`` the checked mapping, and one
module per family its entries. Importing registers nothing: ``default_table()`` builds the
table the handler serves; tests build their own ``AlgorithmTable``."""

from __future__ import annotations

from . import gradient, layer, neuron, perturbation, text
from .entry import AlgorithmEntry, BaselineMode, BuildContext, Family, Param
from .table import AlgorithmTable, TableError


def default_table() -> AlgorithmTable:
    """Every servable algorithm, the gradient family first."""
    return AlgorithmTable([*gradient.ENTRIES, *layer.ENTRIES, *neuron.ENTRIES, *perturbation.ENTRIES])


def text_table() -> AlgorithmTable:
    """The algorithms a text model (``input.kind: text``) is served with."""
    return AlgorithmTable(text.ENTRIES)


__all__ = ["AlgorithmEntry", "AlgorithmTable", "BaselineMode", "BuildContext", "Family", "Param",
           "TableError", "default_table", "text_table"]
