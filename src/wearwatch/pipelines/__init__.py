"""Pipelines by name, as ``wearwatch worker NAME`` runs them.

A factory takes the ``--param key=value`` pairs given on the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wearwatch.runtime.operator import KeyedOperator


def _reading_totals(**params: Any) -> KeyedOperator:
    from wearwatch.pipelines.reading_totals import ReadingTotalsOperator

    return ReadingTotalsOperator(**params)


def _mill(**params: Any) -> KeyedOperator:
    from wearwatch.pipelines.mill.operator import MillOperator

    return MillOperator(**params)


PIPELINES: dict[str, Callable[..., KeyedOperator]] = {
    "reading_totals": _reading_totals,
    "mill": _mill,
}


def build_pipeline(name: str, params: dict[str, Any]) -> KeyedOperator:
    try:
        factory = PIPELINES[name]
    except KeyError:
        raise ValueError(
            f"pipeline {name!r}: unknown; choose one of {', '.join(sorted(PIPELINES))}"
        ) from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"pipeline {name!r}: bad --param ({exc})") from None
