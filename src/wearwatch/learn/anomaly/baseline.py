"""Per-machine baselines of window features, a global fallback, and hard limits with overrides.

A baseline is what a machine's features looked like while it was healthy: per feature
(``<sensor>.<aggregate>``) the mean, std, p01, p50, p99, min, max and count of windows, per
(machine, window size). Machines differ (a pump on a long pipe runs at a higher pressure than
its neighbour), so a machine is judged against itself. A machine with too few healthy windows,
or one never seen, is judged against the pooled baseline of the machines with the same sensors
(its *fallback*), which is wider because it includes the spread between machines.

>>> import pandas as pd
>>> frame = pd.DataFrame({
...     "machine_id": ["p1"] * 4 + ["p2"] * 4, "window_s": 5.0,
...     "vibration.mean": [1.0, 2.0, 3.0, 2.0, 5.0, 5.0, 5.0, 5.0]})
>>> b = Baselines.fit(frame, min_windows=4)
>>> b.lookup("p1", 5.0, ["vibration"]).stats["vibration.mean"].mean
2.0
>>> fallback = b.lookup("p9", 5.0, ["vibration"])   # never seen: the pooled baseline
>>> fallback.key, fallback.stats["vibration.mean"].mean, fallback.windows
('*', 3.5, 8)

Hard limits are what a plant configures (e.g. the ISO 10816 C/D boundary for vibration):
machine → sensor → (low, high), where ``"*"`` applies to every machine and a machine's own
entry for a sensor replaces the ``"*"`` one.

>>> limits = HardLimits({"*": {"vibration": (None, 7.1)}, "p1": {"vibration": (None, 4.5)}})
>>> limits.for_machine("p1"), limits.for_machine("p2")
({'vibration': (None, 4.5)}, {'vibration': (None, 7.1)})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

#: Columns of the feature-store frame that are not features.
KEY_COLUMNS = ("ts", "machine_id", "window_s")
#: A fallback baseline's key (the machine it belongs to: all of them).
FALLBACK = "*"


def split_feature(name: str) -> tuple[str, str]:
    """``("bearing_temp", "mean")`` from ``"bearing_temp.mean"``.

    >>> split_feature("bearing_temp.mean")
    ('bearing_temp', 'mean')
    """
    sensor, dot, aggregate = name.rpartition(".")
    if not dot or not sensor or not aggregate:
        raise ValueError(f"feature {name!r} is not named <sensor>.<aggregate>")
    return sensor, aggregate


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a feature-store frame, sorted."""
    return sorted(c for c in frame.columns if c not in KEY_COLUMNS)


class FeatureStats(NamedTuple):
    """One feature's healthy distribution over windows."""

    mean: float
    std: float
    p01: float
    p50: float
    p99: float
    min: float
    max: float
    n: int


def _stats(values: np.ndarray) -> FeatureStats | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    p01, p50, p99 = np.percentile(values, [1.0, 50.0, 99.0])
    return FeatureStats(
        mean=float(values.mean()),
        std=float(values.std()),
        p01=float(p01),
        p50=float(p50),
        p99=float(p99),
        min=float(values.min()),
        max=float(values.max()),
        n=int(values.size),
    )


@dataclass(frozen=True)
class Baseline:
    """The healthy feature distributions of one machine (or of a fallback) at one window size."""

    key: str
    window_s: float
    sensors: tuple[str, ...]
    windows: int
    stats: dict[str, FeatureStats]

    @classmethod
    def fit(cls, key: str, window_s: float, frame: pd.DataFrame) -> Baseline:
        stats = {}
        for column in feature_columns(frame):
            fitted = _stats(frame[column].to_numpy(dtype=np.float64, na_value=np.nan))
            if fitted is not None:
                stats[column] = fitted
        sensors = tuple(sorted({split_feature(c)[0] for c in stats}))
        return cls(key, float(window_s), sensors, len(frame), stats)

    def scale(self, feature: str, floor_rel: float, floor_abs: float) -> float:
        """The std a z-score of ``feature`` divides by: the healthy std with a floor.

        >>> b = Baseline("p1", 5.0, ("t",), 9, {"t.mean": FeatureStats(80, 0, 80, 80, 80, 80,
        ...     80, 9)})
        >>> b.scale("t.mean", 0.01, 1e-6)   # constant in training: 1 % of its level
        0.8
        """
        s = self.stats[feature]
        return max(s.std, floor_rel * abs(s.p50), floor_abs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "window_s": self.window_s,
            "sensors": list(self.sensors),
            "windows": self.windows,
            "stats": {k: list(v) for k, v in sorted(self.stats.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            key=str(data["key"]),
            window_s=float(data["window_s"]),
            sensors=tuple(str(s) for s in data["sensors"]),
            windows=int(data["windows"]),
            stats={
                str(k): FeatureStats(*(float(x) for x in v[:7]), int(v[7]))
                for k, v in dict(data["stats"]).items()
            },
        )


def _sensors_of(frame: pd.DataFrame) -> tuple[str, ...]:
    present = [c for c in feature_columns(frame) if frame[c].notna().any()]
    return tuple(sorted({split_feature(c)[0] for c in present}))


class Baselines:
    """Own baselines per (machine, window size) and fallbacks per (window size, sensor set)."""

    def __init__(
        self,
        own: Mapping[tuple[str, float], Baseline],
        fallbacks: Mapping[float, list[Baseline]],
    ) -> None:
        self.own = dict(own)
        self.fallbacks = {w: list(bs) for w, bs in fallbacks.items()}

    @classmethod
    def fit(cls, frame: pd.DataFrame, min_windows: int = 30) -> Baselines:
        """Fit from a feature-store frame of windows believed healthy."""
        for column in ("machine_id", "window_s"):
            if column not in frame.columns:
                raise ValueError(f"feature frame: missing column `{column}`")
        own: dict[tuple[str, float], Baseline] = {}
        pools: dict[tuple[float, tuple[str, ...]], list[pd.DataFrame]] = {}
        for (machine, window_s), group in frame.groupby(["machine_id", "window_s"], sort=True):
            group = group.dropna(axis=1, how="all")
            sensors = _sensors_of(group)
            if not sensors:
                continue
            pools.setdefault((float(window_s), sensors), []).append(group)
            if len(group) >= min_windows:
                own[(str(machine), float(window_s))] = Baseline.fit(str(machine), window_s, group)
        fallbacks: dict[float, list[Baseline]] = {}
        for (window_s, _sensors), groups in sorted(pools.items()):
            pooled = pd.concat(groups, ignore_index=True)
            fallbacks.setdefault(window_s, []).append(Baseline.fit(FALLBACK, window_s, pooled))
        return cls(own, fallbacks)

    def lookup(self, machine_id: str, window_s: float, sensors: Iterable[str]) -> Baseline | None:
        """The machine's own baseline, else the fallback whose sensors overlap ``sensors`` most
        (ties: the fewer extra sensors, then the first fitted); ``None`` for an unknown size."""
        own = self.own.get((machine_id, window_s))
        if own is not None:
            return own
        candidates = self.fallbacks.get(window_s)
        if not candidates:
            return None
        wanted = set(sensors)
        best = max(
            enumerate(candidates),
            key=lambda ib: (len(wanted & set(ib[1].sensors)), -len(ib[1].sensors), -ib[0]),
        )
        return best[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "own": [b.to_dict() for _, b in sorted(self.own.items())],
            "fallbacks": [b.to_dict() for w in sorted(self.fallbacks) for b in self.fallbacks[w]],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baselines:
        own = {}
        for item in data["own"]:
            b = Baseline.from_dict(item)
            own[(b.key, b.window_s)] = b
        fallbacks: dict[float, list[Baseline]] = {}
        for item in data["fallbacks"]:
            b = Baseline.from_dict(item)
            fallbacks.setdefault(b.window_s, []).append(b)
        return cls(own, fallbacks)


Limit = tuple[float | None, float | None]


def _limit(path: str, value: Any) -> Limit:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"limits `{path}`: expected [low, high], got {value!r}")
    out: list[float | None] = []
    for side, bound in zip(("low", "high"), value, strict=True):
        if bound is None:
            out.append(None)
            continue
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ValueError(f"limits `{path}.{side}`: expected a number or null, got {bound!r}")
        if not math.isfinite(bound):
            raise ValueError(f"limits `{path}.{side}`: {bound!r} is not finite")
        out.append(float(bound))
    low, high = out
    if low is not None and high is not None and low >= high:
        raise ValueError(f"limits `{path}`: low {low} must be below high {high}")
    return low, high


class HardLimits:
    """Machine → sensor → (low, high); ``"*"`` for every machine, a machine's own entry wins."""

    def __init__(self, limits: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        checked: dict[str, dict[str, Limit]] = {}
        for machine, sensors in (limits or {}).items():
            if not isinstance(sensors, Mapping):
                raise ValueError(f"limits `{machine}`: expected sensor → [low, high]")
            checked[str(machine)] = {
                str(s): _limit(f"{machine}.{s}", v) for s, v in sorted(sensors.items())
            }
        self.limits = checked
        default = checked.get(FALLBACK, {})
        self._resolved = {m: {**default, **own} for m, own in checked.items() if m != FALLBACK}
        self._default = default

    def for_machine(self, machine_id: str) -> dict[str, Limit]:
        return self._resolved.get(machine_id, self._default)

    def to_dict(self) -> dict[str, dict[str, list[float | None]]]:
        return {m: {s: list(v) for s, v in ss.items()} for m, ss in sorted(self.limits.items())}
