"""LRP's rule book: which rule each module type gets when the user sets none (Captum 0.9.0's
``SUPPORTED_LAYERS_WITH_RULES`` and ``SUPPORTED_NON_LINEAR_LAYERS``).

Types match exactly, as in Captum: a subclass of ``nn.Linear`` may compute something else, so it
needs a rule set by hand. Only leaf modules (no children) are looked up; a module of no listed
type and without a ``rule`` attribute is refused with a ``TypeError`` (Captum's error).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .lrp_rules import EpsilonRule, IdentityRule, PropagationRule


class Addition_Module(nn.Module):  # noqa: N801 (Captum's name)
    """``x1 + x2`` as a module, so that LRP splits relevance between the two summands
    (an addition written in ``forward`` passes the whole relevance to each)."""

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return x1 + x2


# Module families (Zennit's ``types``), then the rule each family gets.
POOLING = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
WEIGHTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
SUMS = (Addition_Module,)
# Relevance crosses these unchanged (their derivative is ignored), whatever their ``rule``.
PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Dropout, nn.Tanh)

DEFAULT_RULES: dict[type[nn.Module], Callable[[], PropagationRule]] = {
    kind: EpsilonRule for kind in (*POOLING, *WEIGHTED, *SUMS)
}
# Captum's own Addition_Module, known by its qualified name so that models written for Captum
# keep their default without this package importing Captum.
FOREIGN_DEFAULTS: dict[str, Callable[[], PropagationRule]] = {
    "captum.attr._utils.custom_modules.Addition_Module": EpsilonRule,
}
PASS_THROUGH_RULE = IdentityRule()


def _check_table() -> None:
    for kind, make in DEFAULT_RULES.items():
        if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
            raise TypeError(f"LRP rule table key {kind!r} is not a module type")
        if not isinstance(make(), PropagationRule):
            raise TypeError(f"LRP default for {kind.__name__} is not a PropagationRule")
    overlap = set(DEFAULT_RULES) & set(PASS_THROUGH)
    if overlap:
        raise TypeError(f"LRP table lists {sorted(k.__name__ for k in overlap)} twice")


_check_table()


def qualified_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def default_rule(module: nn.Module) -> PropagationRule | None:
    """A fresh default rule for ``module``'s type, ``PASS_THROUGH_RULE`` for pass-through
    types, None when the type has no default."""
    kind = type(module)
    if kind in PASS_THROUGH:
        return PASS_THROUGH_RULE
    make = DEFAULT_RULES.get(kind) or FOREIGN_DEFAULTS.get(qualified_name(kind))
    return None if make is None else make()


def supported_names() -> str:
    return ", ".join(k.__name__ for k in (*DEFAULT_RULES, *PASS_THROUGH))


__all__ = ["Addition_Module", "DEFAULT_RULES", "PASS_THROUGH", "PASS_THROUGH_RULE",
           "default_rule", "supported_names"]
