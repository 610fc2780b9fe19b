"""AlgorithmTable: the servable algorithms by name, checked once when built (parameter names
against the engine's ``attribute`` keywords, limit names against ``Limits``, defaults against
their own bounds) and against a model's spec when the model loads (every enabled algorithm is
known, its spec defaults valid, its layer named)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping

from ..errors import ExplainError, UnknownAlgorithm, shown
from ..limits import Limits
from ..spec import ModelSpec, SpecError
from .entry import AlgorithmEntry, layer_keywords


class TableError(ValueError):
    """An entry of the algorithm table contradicts itself or its engine (a programming error,
    raised when the table is built)."""


def _check_entry(e: AlgorithmEntry) -> None:
    where = f"algorithm table: {e.name}"
    if e.engine is None and e.build is None:
        raise TableError(f"{where}: needs an engine class or a build function")
    names = [p.name for p in e.all_params()]
    if len(set(names)) != len(names):
        raise TableError(f"{where}: a parameter is declared twice ({names})")
    for p in e.all_params():
        if p.limit is not None and p.limit not in Limits.names():
            raise TableError(f"{where}: parameter {p.name} is capped by unknown limit "
                             f"{p.limit!r}")
        try:
            p.coerce(p.default, Limits())
        except ExplainError as err:
            raise TableError(f"{where}: the default of {p.name} is invalid: {err}") from None
    for kind, defaults in e.kind_defaults.items():
        unknown = sorted(set(defaults) - set(names))
        if unknown:
            raise TableError(f"{where}: {kind} defaults name unknown parameter {unknown[0]}")
    if e.run is None and e.engine is not None:  # params go to attribute() under their names
        attribute = getattr(e.engine, "attribute", None)
        if attribute is None:
            raise TableError(f"{where}: {e.engine.__name__} has no attribute method")
        accepted = inspect.signature(attribute).parameters
        wanted = [n for n in names if n != "seed"] + list(layer_keywords(e.family))
        wanted += [e.chunk_param] if e.chunk_param else []
        wanted += ["target"] if e.targeted else []
        if e.baselines is not e.baselines.NONE:
            wanted.append("baselines")
        missing = [n for n in wanted if n not in accepted]
        if missing:
            raise TableError(f"{where}: {e.engine.__name__}.attribute takes no "
                             f"{', '.join(missing)}")


class AlgorithmTable(Mapping[str, AlgorithmEntry]):
    """A read-only mapping of name -> entry, checked at construction."""

    def __init__(self, entries: Iterable[AlgorithmEntry]) -> None:
        self._entries: dict[str, AlgorithmEntry] = {}
        for e in entries:
            if e.name in self._entries:
                raise TableError(f"algorithm table: {e.name} is listed twice")
            _check_entry(e)
            self._entries[e.name] = e

    def __getitem__(self, name: str) -> AlgorithmEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, name: str, enabled: tuple[str, ...]) -> AlgorithmEntry:
        """The entry for ``name`` if the model enables it (``check_spec`` has made sure every
        enabled name is in the table)."""
        if name not in enabled or name not in self._entries:
            raise UnknownAlgorithm("algorithm", f"{shown(name)} is not available for this model",
                                   [a for a in enabled if a in self._entries])
        return self._entries[name]

    def check_spec(self, spec: ModelSpec, limits: Limits) -> None:
        """Raises SpecError naming the key when the spec enables an algorithm this server does
        not serve, sets defaults an algorithm does not take, or enables a layer algorithm
        without ``layers`` (the layers' module paths are checked against the model by
        ``service.runtime.layers.measure``)."""
        unknown = [a for a in spec.algorithms if a not in self._entries]
        if unknown:
            raise SpecError(f"spec.yaml: `explain.algorithms` names {', '.join(unknown)}, which "
                            f"this server does not serve; it serves {', '.join(self)}")
        for name, defaults in spec.default_params.items():
            if name not in spec.algorithms:
                raise SpecError(f"spec.yaml: `explain.default_params.{name}`: {name} is not in "
                                "`explain.algorithms`")
            entry = self._entries[name]
            try:
                entry.resolve_params({}, entry.defaults(spec.input_kind.value, defaults), limits)
            except ExplainError as e:
                raise SpecError(f"spec.yaml: `explain.default_params.{name}`: {e}") from None
        layered = [a for a in spec.algorithms if self._entries[a].needs_layer]
        if layered and not spec.layers:
            raise SpecError(f"spec.yaml: `explain.layers` (or `explain.cam_layer`) is required "
                            f"by {', '.join(layered)}")
