"""A machine's health score and its time to maintenance, each with the inputs that made it.

**Health** (0 failed … 100 as new) = 100 − ``RISK_WEIGHT`` × risk − the penalty of the worst
*machine* anomaly severity (:data:`SEVERITY_PENALTY`), clipped to [0, 100]. Sensor-category
evidence (a stuck or dropping sensor) costs no health: it says the measurement is broken, not
the machine; it is listed in the explanation all the same.

**Time to maintenance** (:class:`MaintenanceForecast`): wear grows roughly exponentially, so the
forecast fits a line to the *logarithm* of a lead sensor's window means over the last
``span_h`` hours and extrapolates it to a limit (for vibration, the ISO 10816 B/C boundary of
the machine's class: "plan maintenance"). Robust to noise twice over: window means are first
reduced to the median per ``bucket_s`` bucket (a spike or dropout window moves a median
little), and a forecast is given only when the growth rate's one-sided lower confidence bound
is above zero — otherwise there is no upward trend, and the answer is ``None``.

>>> from wearwatch.events import AnomalyScore, utc
>>> calm = AnomalyScore(ts=utc(0), machine_id="p1", window_s=30.0, severity="normal", score=0.0)
>>> health, why = health_score(calm, risk=0.25)
>>> health, why["risk_penalty"], why["anomaly_penalty"]
(85.0, 15.0, 0.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from wearwatch.events import SEVERITIES, AnomalyScore, FeatureVector
from wearwatch.learn.risk.labels import event_micros

#: Health points a risk of 1.0 takes off.
RISK_WEIGHT = 60.0
#: Health points taken off by the worst machine-anomaly severity.
SEVERITY_PENALTY: dict[str, float] = {
    "normal": 0.0,
    "watch": 5.0,
    "medium": 15.0,
    "high": 30.0,
    "critical": 40.0,
}


def _worst(score: AnomalyScore, category: str) -> str:
    """The highest severity among ``score``'s triggers of ``category`` (the score's own
    severity when it lists no trigger but is of that category)."""
    severities = [t.severity for t in score.triggers if t.category == category]
    if not score.triggers and score.category == category:
        severities.append(score.severity)
    return max(severities, key=SEVERITIES.index, default="normal")


def health_score(score: AnomalyScore, risk: float) -> tuple[float, dict[str, float]]:
    """Health 0–100 from a window's anomaly score and the failure risk, and its inputs."""
    if not 0.0 <= risk <= 1.0:
        raise ValueError(f"risk: a probability in [0, 1] is required, got {risk!r}")
    machine, sensor = _worst(score, "machine"), _worst(score, "sensor")
    risk_penalty = RISK_WEIGHT * risk
    anomaly_penalty = SEVERITY_PENALTY[machine]
    health = min(100.0, max(0.0, 100.0 - risk_penalty - anomaly_penalty))
    return health, {
        "risk": risk,
        "risk_penalty": risk_penalty,
        "anomaly_score": score.score,
        "anomaly_severity": float(SEVERITIES.index(machine)),
        "anomaly_penalty": anomaly_penalty,
        "sensor_fault_severity": float(SEVERITIES.index(sensor)),
    }


@lru_cache(maxsize=256)
def _t_quantile(confidence: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(confidence, dof))


@dataclass
class MaintenanceForecast:
    """One machine's time-to-limit forecast on one sensor; feed it the machine's windows in
    event-time order. State: a bounded deque of bucket medians and the open bucket's values.

    >>> import math
    >>> from wearwatch.events import FeatureVector, utc
    >>> forecast = MaintenanceForecast(limit=4.5, sensor="vibration")
    >>> for k in range(1, 6 * 120 + 1):  # 6 h of 30 s windows growing 10 %/h from 1 mm/s
    ...     t = 30.0 * k
    ...     forecast.update(FeatureVector(ts=utc(t), machine_id="p1", window_s=30.0,
    ...         features={"vibration.mean": math.exp(0.1 * t / 3600)}))
    >>> round(forecast.hours_to_limit(), 3), round(math.log(4.5) / 0.1 - 6.0, 3)
    (9.041, 9.041)
    >>> round(forecast.explain()["vibration.growth_per_h"], 6)
    0.1
    """

    limit: float
    sensor: str = "vibration"
    #: Window means are reduced to one median per bucket of this many seconds.
    bucket_s: float = 900.0
    #: Buckets older than this (hours before the newest) are forgotten.
    span_h: float = 12.0
    #: Fewest closed buckets to fit a trend on.
    min_buckets: int = 6
    #: One-sided confidence that the growth rate is above zero before forecasting.
    confidence: float = 0.95
    #: Forecasts further out than this (hours) are None: a trend of hours says nothing there.
    max_h: float = 90 * 24.0
    buckets: deque[tuple[float, float]] = field(default_factory=deque)
    _open_id: int | None = None
    _open: list[tuple[float, float]] = field(default_factory=list)
    _latest_h: float = math.nan
    _latest_value: float = math.nan
    _fit: tuple[float, float, float, float] | None = None  # (slope, low, level, at_h)
    skipped: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit) and self.limit > 0):
            raise ValueError(f"limit: must be a positive number, got {self.limit!r}")
        if self.min_buckets < 3:
            raise ValueError(
                f"min_buckets: need at least 3 to bound a slope, got {self.min_buckets}"
            )

    def update(self, fv: FeatureVector) -> None:
        """Take one window's ``<sensor>.mean`` (windows without it, or ≤ 0, change nothing
        but the ``skipped`` count)."""
        value = fv.features.get(f"{self.sensor}.mean")
        if value is None or value <= 0.0:
            self.skipped += 1
            return
        us = event_micros(fv.ts)
        hours = us / 3.6e9
        if hours < self._latest_h:
            raise ValueError(
                f"ts: windows of {fv.machine_id} must come in event-time order, got {fv.ts}"
            )
        bucket = math.floor(us / (self.bucket_s * 1e6))
        if self._open_id is not None and bucket != self._open_id:
            self._close()
        self._open_id = bucket
        self._open.append((hours, math.log(value)))
        self._latest_h, self._latest_value = hours, value

    def reset(self) -> None:
        """Forget the trend (after a repair: the wear it measured is gone)."""
        self.buckets.clear()
        self._open.clear()
        self._open_id, self._fit = None, None

    def _close(self) -> None:
        times, logs = zip(*self._open, strict=True)
        self.buckets.append((float(np.mean(times)), float(np.median(logs))))
        self._open.clear()
        newest = self.buckets[-1][0]
        while self.buckets and self.buckets[0][0] < newest - self.span_h:
            self.buckets.popleft()
        self._fit = None
        if len(self.buckets) >= self.min_buckets:
            at = np.array([b[0] for b in self.buckets]) - newest
            logs_ = np.array([b[1] for b in self.buckets])
            (slope, level), cov = np.polyfit(at, logs_, 1, cov=True)
            spread = _t_quantile(self.confidence, len(at) - 2) * math.sqrt(max(cov[0, 0], 0.0))
            self._fit = (float(slope), float(slope) - spread, float(level), newest)

    def hours_to_limit(self) -> float | None:
        """Hours of machine time from the latest window until the fitted trend reaches the
        limit (0.0 when past it), or None without a significant upward trend."""
        if self._fit is None:
            return None
        slope, low, level, at_h = self._fit
        if low <= 0.0:
            return None
        crossing_h = at_h + (math.log(self.limit) - level) / slope
        hours = max(0.0, crossing_h - self._latest_h)
        return hours if hours <= self.max_h else None

    def explain(self) -> dict[str, float]:
        """The forecast's inputs: latest value, fitted level, limit, growth rate per hour (of
        the log: 0.1 is about +10 %/h) and its lower bound, and the buckets fitted."""
        s = self.sensor
        out = {
            f"{s}.value": self._latest_value,
            f"{s}.limit": self.limit,
            f"{s}.buckets": float(len(self.buckets)),
        }
        if self._fit is not None:
            slope, low, level, _ = self._fit
            out[f"{s}.level"] = math.exp(level)
            out[f"{s}.growth_per_h"] = slope
            out[f"{s}.growth_low_per_h"] = low
        return {k: v for k, v in out.items() if math.isfinite(v)}
