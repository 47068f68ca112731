"""Evidence that a *sensor*, not the machine, is at fault: stuck, dropout, spike, drift.

A dead or spiking sensor must raise a sensor alarm, not a bearing alarm. The evidence comes
from the window's own statistics against the machine's healthy baseline:

- **stuck**: a window of several readings with (almost) no spread while healthy windows (all
  but under 1 %) had noise; or min == max == the previous window's latest for several windows
  in a row (for windows too short for a std). A sensor that is flat when healthy (a speed at
  its setpoint, a coarsely quantised reading) cannot be told stuck, and is not;
- **dropout**: far fewer readings than healthy windows carry (or none while the machine's other
  sensors report);
- **spike**: one reading far above (below) the mean of the window's *other* readings and
  outside the healthy envelope of readings, while that mean is normal (a real rise moves every
  reading, a spike one; a load step inside a window leaves one reading at the old, healthy
  level, which is no spike); or, for several
  outliers in one window, a spread far beyond any healthy window's;
- **drift**: the sensor's level leaves its baseline while every sensor physically coupled to
  it stays put (a bearing that runs hot also vibrates; a leaking seal moves pressure *and*
  flow). Only sensors with a coupling in the config can be told drifting.

Each piece of evidence is a :class:`~wearwatch.events.Trigger` with ``category="sensor"`` and
``feature`` = ``<sensor>.<aggregate>`` it was seen on (its sensor is the part before the dot).
The rules run on one window's statistics as arrays over the machine's sensors (numpy), since
they run for every window of every machine.

>>> from wearwatch.learn.anomaly.baseline import Baseline, FeatureStats
>>> st = lambda m, s: FeatureStats(m, s, m, m, m, m, m, 100)
>>> b = Baseline("p1", 5.0, ("pressure",), 100, {"pressure.count": st(5, 0),
...     "pressure.std": st(0.2, 0.05), "pressure.mean": st(4.0, 0.1)})
>>> rules = SensorFaultRules.compile(b, AnomalyConfig())
>>> stuck = {"pressure.count": 5.0, "pressure.std": 0.0, "pressure.mean": 4.1,
...     "pressure.min": 4.1, "pressure.max": 4.1, "pressure.latest": 4.1}
>>> [(t.detector, t.feature, t.category) for t in rules.triggers(rules.window(stuck), {})]
[('stuck', 'pressure.std', 'sensor')]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from wearwatch.events import Trigger
from wearwatch.learn.anomaly.baseline import Baseline
from wearwatch.learn.anomaly.config import AnomalyConfig

#: Per sensor: (the previous window's latest, windows in a row with min == max == it).
History = Mapping[str, tuple[float, int]]
#: The window statistics the rules read, one row each (over the sensors).
AGGREGATES = ("count", "mean", "std", "min", "max", "latest")
COUNT, MEAN, STD, MIN, MAX, LATEST = range(len(AGGREGATES))


def stuck_limit(b: Baseline, sensor: str, config: AnomalyConfig) -> float:
    """The window std at or below which ``sensor`` is stuck, or NaN where the rule cannot tell.

    >>> from wearwatch.learn.anomaly.baseline import FeatureStats
    >>> noisy = Baseline("p1", 5.0, ("t",), 9, {"t.std": FeatureStats(.5, .1, .3, .5, .7, .2,
    ...     .9, 9)})
    >>> quantised = Baseline("p1", 5.0, ("t",), 9, {"t.std": FeatureStats(.5, .2, 0, .5, .7, 0,
    ...     .9, 9)})
    >>> stuck_limit(noisy, "t", AnomalyConfig()), stuck_limit(quantised, "t", AnomalyConfig())
    (0.005, nan)
    """
    noise = b.stats.get(f"{sensor}.std")
    if noise is None or noise.p50 <= config.std_floor_abs:
        return float("nan")
    limit = config.stuck_std_ratio * noise.p50
    return limit if noise.p01 > limit else float("nan")


def _trigger(
    detector: str, feature: str, value: float, threshold: float, score: float, severity: str
) -> Trigger:
    return Trigger(
        detector=detector,
        feature=feature,
        value=float(value),
        threshold=float(threshold),
        score=float(score),
        severity=severity,  # type: ignore[arg-type]
        category="sensor",
    )


@dataclass(frozen=True)
class SensorFaultRules:
    """The sensor-fault rules compiled for one baseline: healthy statistics as arrays."""

    sensors: tuple[str, ...]
    config: AnomalyConfig
    #: ``<sensor>.<aggregate>`` for each (aggregate, sensor), aggregate-major.
    names: tuple[str, ...]
    noise: np.ndarray  # median window std: the reading-level noise (nan: unknown)
    noise_p99: np.ndarray  # p99 of the healthy window std
    #: The healthy envelope of single readings: p99 of window maxima, p01 of window minima.
    high_p99: np.ndarray
    low_p01: np.ndarray
    #: The std at or below which a window is stuck; NaN where the rule cannot tell (a sensor
    #: with no noise, or whose healthy windows were that flat in ≥ 1 % of cases: quantised).
    stuck_limit: np.ndarray
    #: Sensors that can be told flat over windows: their healthy latest values vary, and their
    #: healthy windows are either never flat (a finite stuck limit) or too short for a std.
    flat_told: np.ndarray
    count_p50: np.ndarray
    count_p01: np.ndarray
    level: np.ndarray  # healthy mean of the window mean
    level_scale: np.ndarray  # its floored std
    #: (sensor index, indices of the sensors coupled to it) for drift.
    coupling: tuple[tuple[int, tuple[int, ...]], ...]

    @classmethod
    def compile(cls, b: Baseline, config: AnomalyConfig) -> SensorFaultRules:
        def stat(feature: str, field: str) -> float:
            s = b.stats.get(feature)
            return float(getattr(s, field)) if s is not None else np.nan

        sensors = b.sensors
        index = {s: i for i, s in enumerate(sensors)}
        limits = np.array([stuck_limit(b, s, config) for s in sensors])
        coupling = tuple(
            (index[s], tuple(index[c] for c in coupled if c in index))
            for s, coupled in sorted(config.drift_coupling.items())
            if s in index and any(c in index for c in coupled)
        )
        return cls(
            sensors=sensors,
            config=config,
            names=tuple(f"{s}.{a}" for a in AGGREGATES for s in sensors),
            noise=np.array([stat(f"{s}.std", "p50") for s in sensors]),
            noise_p99=np.array([stat(f"{s}.std", "p99") for s in sensors]),
            high_p99=np.array([stat(f"{s}.max", "p99") for s in sensors]),
            low_p01=np.array([stat(f"{s}.min", "p01") for s in sensors]),
            stuck_limit=limits,
            flat_told=np.array(
                [
                    stat(f"{s}.latest", "std") > config.std_floor_abs
                    and (np.isfinite(limit) or stat(f"{s}.count", "p50") < config.stuck_min_count)
                    for s, limit in zip(sensors, limits, strict=True)
                ],
                dtype=bool,
            ),
            count_p50=np.array([stat(f"{s}.count", "p50") for s in sensors]),
            count_p01=np.array([stat(f"{s}.count", "p01") for s in sensors]),
            level=np.array([stat(f"{s}.mean", "mean") for s in sensors]),
            level_scale=np.array(
                [
                    b.scale(f"{s}.mean", config.std_floor_rel, config.std_floor_abs)
                    if f"{s}.mean" in b.stats
                    else np.nan
                    for s in sensors
                ]
            ),
            coupling=coupling,
        )

    def window(self, features: Mapping[str, float]) -> np.ndarray:
        """The window's statistics as an (aggregates × sensors) array, NaN where absent."""
        nan = np.nan
        get = features.get
        return np.array([get(n, nan) for n in self.names]).reshape(len(AGGREGATES), -1)

    def flat_runs(self, x: np.ndarray, history: History) -> np.ndarray:
        """Per sensor: windows in a row, this one included, with min == max == the previous
        window's latest (0 without a previous window)."""
        previous = [history.get(s) for s in self.sensors]
        runs = np.zeros(len(self.sensors))
        for i, prev in enumerate(previous):
            if prev is not None and x[MIN, i] == x[MAX, i] == prev[0]:
                runs[i] = prev[1] + 1
        return runs

    def triggers(self, x: np.ndarray, history: History) -> list[Trigger]:
        """Every sensor-fault trigger of one window ``x`` (see :meth:`window`), by sensor."""
        cfg = self.config
        count = np.nan_to_num(x[COUNT], nan=0.0)
        absent = np.isnan(x[COUNT]) & np.isnan(x[MEAN])
        if absent.all():
            return []  # no sensor reported: no FeatureVector should exist; nothing to judge
        with np.errstate(invalid="ignore", divide="ignore"):
            # stuck: no spread over several readings, where healthy windows had noise
            stuck_limit = self.stuck_limit
            stuck_std = (count >= cfg.stuck_min_count) & (x[STD] <= stuck_limit)
            runs = self.flat_runs(x, history) if history else np.zeros(len(self.sensors))
            stuck_flat = (runs >= cfg.stuck_windows) & self.flat_told
            # dropout: far fewer readings than a healthy window carries
            drop_limit = cfg.dropout_ratio * self.count_p50
            dropout = (self.count_p50 > 0) & (count <= drop_limit) & (count < self.count_p01)
            # spike: one reading far from the mean of the others, which stays normal
            n = np.maximum(count, 2.0)
            rest_hi = (count * x[MEAN] - x[MAX]) / (n - 1)
            rest_lo = (count * x[MEAN] - x[MIN]) / (n - 1)
            jump_hi = x[MAX] - rest_hi
            jump_lo = rest_lo - x[MIN]
            spike_at = cfg.spike_k * self.noise
            normal = cfg.z_watch * self.level_scale
            # ...and the odd reading is outside anything healthy (a load step inside a window
            # leaves one reading at the old level: within the envelope)
            spike_hi = (
                (count >= 3)
                & (jump_hi >= spike_at)
                & (x[MAX] >= self.high_p99 + spike_at)
                & (np.abs(rest_hi - self.level) < normal)
                & (self.noise > 0)
            )
            spike_lo = (
                (count >= 3)
                & (jump_lo >= spike_at)
                & (x[MIN] <= self.low_p01 - spike_at)
                & (np.abs(rest_lo - self.level) < normal)
                & (self.noise > 0)
            )
            # outliers, several: a spread no single reading explains and healthy windows lack
            wide_at = cfg.spike_std_ratio * self.noise_p99
            wide = (count >= 3) & (x[STD] >= wide_at) & (self.noise_p99 > 0)
            z = (x[MEAN] - self.level) / self.level_scale
        any_fault = stuck_std | stuck_flat | dropout | spike_hi | spike_lo | wide
        drift_candidates = [
            (i, coupled)
            for i, coupled in self.coupling
            if not any_fault[i] and abs(z[i]) >= cfg.z_watch
        ]
        if not any_fault.any() and not drift_candidates:
            return []
        out: list[Trigger] = []
        for i, s in enumerate(self.sensors):
            if stuck_std[i]:
                limit = stuck_limit[i]
                score = limit / max(x[STD, i], limit * 1e-3)
                out.append(
                    _trigger("stuck", f"{s}.std", x[STD, i], limit, score, cfg.stuck_severity)
                )
            elif stuck_flat[i]:
                out.append(
                    _trigger(
                        "stuck",
                        f"{s}.latest",
                        runs[i],
                        cfg.stuck_windows,
                        runs[i] / cfg.stuck_windows,
                        cfg.stuck_severity,
                    )
                )
            if dropout[i]:
                limit = drop_limit[i]
                score = limit / max(count[i], limit * 0.1)
                out.append(
                    _trigger("dropout", f"{s}.count", count[i], limit, score, cfg.dropout_severity)
                )
            if stuck_std[i] or stuck_flat[i] or dropout[i] or absent[i]:
                continue  # a stuck or silent sensor's spikes and level mean nothing
            if spike_hi[i] and (not spike_lo[i] or jump_hi[i] >= jump_lo[i]):
                score = jump_hi[i] / spike_at[i]
                out.append(
                    _trigger(
                        "spike",
                        f"{s}.max",
                        x[MAX, i],
                        rest_hi[i] + spike_at[i],
                        score,
                        "medium" if score >= cfg.spike_medium else cfg.spike_severity,
                    )
                )
            elif spike_lo[i]:
                score = jump_lo[i] / spike_at[i]
                out.append(
                    _trigger(
                        "spike",
                        f"{s}.min",
                        x[MIN, i],
                        rest_lo[i] - spike_at[i],
                        score,
                        "medium" if score >= cfg.spike_medium else cfg.spike_severity,
                    )
                )
            elif wide[i]:
                out.append(
                    _trigger(
                        "spike",
                        f"{s}.std",
                        x[STD, i],
                        wide_at[i],
                        x[STD, i] / wide_at[i],
                        cfg.spike_severity,
                    )
                )
        for i, coupled in drift_candidates:
            if spike_hi[i] or spike_lo[i] or wide[i]:
                continue
            others = z[list(coupled)]
            others = others[np.isfinite(others)]
            if others.size == 0 or (np.abs(others) >= cfg.drift_coupled_z).any():
                continue
            side = 1.0 if z[i] > 0 else -1.0
            out.append(
                _trigger(
                    "drift",
                    f"{self.sensors[i]}.mean",
                    x[MEAN, i],
                    self.level[i] + side * cfg.z_watch * self.level_scale[i],
                    abs(z[i]) / cfg.z_watch,
                    cfg.drift_severity,
                )
            )
        return out
