"""The severity rules: hard limits, z-score bands, persistence, and how triggers combine.

Each rule that fires is a :class:`~wearwatch.events.Trigger` with the value it saw, the
threshold it crossed and a score that is 1.0 at that threshold, so triggers of different
detectors compare. A window's severity is its most severe trigger's; ``reason`` names the
strongest trigger (most severe, then highest score).

>>> cfg = AnomalyConfig()
>>> t = zscore_trigger("vibration.mean", 3.0, mean=2.0, scale=0.1, config=cfg)
>>> t.severity, round(t.score, 3), round(t.threshold, 3)   # z = 10: the high band
('high', 2.5, 2.4)
>>> hard_limit_trigger("vibration", "mean", 7.5, (None, 7.1)).severity
'critical'
>>> combine([t])[:3]
('high', 2.5, 'machine')
"""

from __future__ import annotations

from collections.abc import Sequence

from wearwatch.events import SEVERITIES, Trigger
from wearwatch.learn.anomaly.config import AnomalyConfig

RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
#: Persistence escalates up to this level; critical stays reserved for hard limits.
PERSISTENCE_CAP = "high"


def escalate(severity: str) -> str:
    """One level up, capped at :data:`PERSISTENCE_CAP`.

    >>> escalate("watch"), escalate("high"), escalate("critical")
    ('medium', 'high', 'critical')
    """
    rank = RANK[severity]
    cap = RANK[PERSISTENCE_CAP]
    return SEVERITIES[rank if rank >= cap else rank + 1]


def hard_limit_trigger(
    sensor: str, aggregate: str, value: float, limit: tuple[float | None, float | None]
) -> Trigger | None:
    """Critical when ``value`` is outside (low, high); score = 1 + excess / |limit|."""
    low, high = limit
    if high is not None and value > high:
        bound = high
    elif low is not None and value < low:
        bound = low
    else:
        return None
    score = 1.0 + abs(value - bound) / max(abs(bound), 1e-9)
    return Trigger(
        detector="hard_limit",
        feature=f"{sensor}.{aggregate}",
        value=value,
        threshold=bound,
        score=score,
        severity="critical",
    )


def zscore_trigger(
    feature: str, value: float, mean: float, scale: float, config: AnomalyConfig
) -> Trigger | None:
    """The z-score band of ``value`` against the baseline (``scale``: floored std).

    ``threshold`` is the value at which the rule fires on this side of the mean (mean ±
    z_watch·scale) and ``score`` = |z| / z_watch, so it grows with the deviation whatever
    the band.
    """
    z = (value - mean) / scale
    severity = config.severity_for_z(z)
    if severity == "normal":
        return None
    side = 1.0 if z > 0 else -1.0
    return Trigger(
        detector="zscore",
        feature=feature,
        value=value,
        threshold=mean + side * config.z_watch * scale,
        score=abs(z) / config.z_watch,
        severity=severity,
    )


def persistence_trigger(
    key_feature: str, run: int, severity: str, category: str, config: AnomalyConfig
) -> Trigger | None:
    """Escalate an alarm key that has been elevated for ``config.persistence`` windows.

    ``run`` counts consecutive elevated windows including this one; ``severity`` is the key's
    severity in this window before escalation.

    >>> persistence_trigger("", 6, "watch", "machine", AnomalyConfig()).severity
    'medium'
    >>> persistence_trigger("", 5, "watch", "machine", AnomalyConfig()) is None
    True
    """
    if run < config.persistence or severity == "normal":
        return None
    return Trigger(
        detector="persistence",
        feature=key_feature,
        value=float(run),
        threshold=float(config.persistence),
        score=run / config.persistence,
        severity=escalate(severity),
        category=category,  # type: ignore[arg-type]
    )


def strongest(triggers: Sequence[Trigger]) -> Trigger | None:
    """The most severe trigger, then the highest score, then the first listed."""
    best: Trigger | None = None
    best_key = (-1, 0.0)
    for t in triggers:
        key = (RANK[t.severity], t.score)
        if key > best_key:
            best, best_key = t, key
    return best


def describe(trigger: Trigger) -> str:
    """A one-line reason.

    >>> describe(Trigger(detector="zscore", feature="vibration.mean", value=3.0,
    ...     threshold=2.4, score=1.5, severity="watch"))
    'zscore vibration.mean: 3 vs threshold 2.4 (score 1.5, watch)'
    """
    where = f" {trigger.feature}" if trigger.feature else ""
    return (
        f"{trigger.detector}{where}: {trigger.value:.4g} vs threshold {trigger.threshold:.4g} "
        f"(score {trigger.score:.3g}, {trigger.severity})"
    )


def combine(triggers: Sequence[Trigger]) -> tuple[str, float, str, str]:
    """(severity, score, category, reason) of a window from all its triggers."""
    best = strongest(triggers)
    if best is None:
        return "normal", 0.0, "none", ""
    return best.severity, best.score, best.category, describe(best)
