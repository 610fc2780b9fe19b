"""pytest plugin: run captum's own tests with every public ``captum.attr`` class (and the
``captum.metrics`` functions) replaced by the engine's class of the same name.

Loaded by ``scripts/captum_suite.py`` (``-p scripts.captum_shim``). The swap happens in
``pytest_configure``, before any test module is imported, in every loaded ``captum`` module that
holds the name, so ``from captum.attr._core.saliency import Saliency`` in a test gets ours. A
public class the engine lacks is replaced by a class that raises on construction, so its tests
count as failures rather than silently running captum's code.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import pytest

SWAPPED: dict[str, str] = {}   # name -> "ours" | "missing"
# Public classes that captum keeps in private modules (its tests import them from there).
PRIVATE: dict[str, tuple[str, ...]] = {
    "captum.attr._utils.lrp_rules": ("PropagationRule", "EpsilonRule", "GammaRule",
                                     "Alpha1_Beta0_Rule", "IdentityRule"),
}


def _missing(name: str) -> type:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{name} is not in service.attribution")

    return type(name, (), {"__init__": __init__})


def _import_all(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if ".llm" in info.name or "_llm" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # optional extras (matplotlib, ipywidgets) may be absent
            pass


def swap() -> dict[str, str]:
    import captum.attr
    import captum.metrics

    import service.attribution as ours
    import service.metrics as our_metrics

    _import_all("captum.attr")
    _import_all("captum.metrics")
    replacements: dict[int, object] = {}
    for name in captum.attr.__all__:
        theirs = getattr(captum.attr, name, None)
        if not inspect.isclass(theirs):
            mine = getattr(ours, name, None)
            if mine is not None and callable(theirs):
                replacements[id(theirs)] = mine
                SWAPPED[name] = "ours"
            continue
        mine = getattr(ours, name, None)
        if mine is None:
            replacements[id(theirs)] = _missing(name)
            SWAPPED[name] = "missing"
        else:
            replacements[id(theirs)] = mine
            SWAPPED[name] = "ours"
    for name in ("infidelity", "infidelity_perturb_func_decorator", "sensitivity_max"):
        theirs = getattr(captum.metrics, name, None)
        mine = getattr(our_metrics, name, None)
        if theirs is not None and mine is not None:
            replacements[id(theirs)] = mine
            SWAPPED[name] = "ours"
    for modname, names in PRIVATE.items():
        private = importlib.import_module(modname)
        for name in names:
            mine = getattr(ours, name, None)
            if mine is not None:
                replacements[id(getattr(private, name))] = mine
                SWAPPED[name] = "ours"
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("captum") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            new = replacements.get(id(value))
            if new is not None:
                setattr(module, attr, new)
    return SWAPPED


def pytest_configure(config: pytest.Config) -> None:
    swap()


def pytest_report_header(config: pytest.Config) -> list[str]:
    missing = sorted(n for n, v in SWAPPED.items() if v == "missing")
    ours = sum(1 for v in SWAPPED.values() if v == "ours")
    return [f"captum shim: {ours} names swapped for service.attribution/metrics; "
            f"missing (raise): {', '.join(missing) or 'none'}"]
