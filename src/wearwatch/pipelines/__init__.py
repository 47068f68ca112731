"""Pipelines by name, as ``wearwatch worker NAME`` runs them.

A factory takes the ``--param key=value`` pairs given on the command line and returns a
:class:`~wearwatch.runtime.dataflow.Flow` or a ``KeyedOperator``. Factories come from three
places: the built-ins below, ``@register("name")`` in a module that has been imported (the
modules in :data:`BUILTIN_MODULES`, or any module a ``wearwatch.pipelines`` entry point names),
and ``module:factory`` given as the name itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from wearwatch.runtime.dataflow import REGISTRY, Flow
from wearwatch.runtime.operator import KeyedOperator

#: The registry ``@register`` adds to (the runtime's dict: that layer cannot import this one).
PIPELINES = REGISTRY

#: Modules of this package whose import registers flows.
BUILTIN_MODULES: tuple[str, ...] = (
    "wearwatch.pipelines.fleet_features",
    "wearwatch.pipelines.fleet.flow",
    "wearwatch.pipelines.reading_windows",
    "wearwatch.pipelines.mill.flow",
)


def _reading_totals(**params: Any) -> KeyedOperator:
    from wearwatch.pipelines.reading_totals import ReadingTotalsOperator

    return ReadingTotalsOperator(**params)


PIPELINES.setdefault("reading_totals", _reading_totals)


def _load_registrations() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group="wearwatch.pipelines"):
        loaded = entry.load()
        if callable(loaded) and entry.name not in PIPELINES:
            PIPELINES[entry.name] = loaded


def _factory(name: str) -> Any:
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"pipeline {name!r}: cannot load ({exc})") from None
        if not callable(factory):
            raise ValueError(f"pipeline {name!r}: {attr} is not a factory")
        return factory
    if name not in PIPELINES:
        _load_registrations()
    try:
        return PIPELINES[name]
    except KeyError:
        raise ValueError(
            f"pipeline {name!r}: unknown; choose one of {', '.join(sorted(PIPELINES))}"
        ) from None


def build_pipeline(name: str, params: dict[str, Any]) -> KeyedOperator | Flow:
    factory = _factory(name)
    try:
        built = factory(**params)
    except TypeError as exc:
        raise ValueError(f"pipeline {name!r}: bad --param ({exc})") from None
    if not isinstance(built, KeyedOperator | Flow):
        raise ValueError(
            f"pipeline {name!r}: the factory returned {type(built).__name__}, "
            "expected a Flow or a KeyedOperator"
        )
    return built
