"""Live metrics of two model versions during a rollout, and the rule that gates a promote.

Pure functions of two event lists — ``fleet.model_scores`` (every version's risk prediction on
every health window while a rollout runs, :class:`~wearwatch.events.ModelScore`) and the
``fleet.maintenance`` ground truth — so anyone can recount the figures from the log.

Definitions (event time throughout):

- the **outcome** of a prediction made for machine *m* at ``ts`` by a model of horizon *H*
  (``ModelScore.horizon_s``) is 1 when *m* failed in ``[ts, ts + H)``, else 0 — the labels the
  risk model was trained on (:func:`~wearwatch.learn.risk.labels.label_windows`, for a window
  ending at ``ts``), so a prediction made while *m* is down (between a failure and its repair)
  has no outcome;
- **censoring**: a prediction counts only once its horizon has fully passed in the log's event
  time, ``ts + H ≤ end``, where ``end`` is the latest event time in either list (the log has
  seen that far); a failure seen early does not make a positive count before its negatives
  would, so the scored sample is not biased towards failures;
- **same events**: the two versions are compared on the ``(machine, ts)`` pairs both scored
  and both have an outcome for; a duplicated prediction (an at-least-once replay) counts once;
- **Brier score** = mean (p − y)², the primary metric (lower is better); **log loss** = mean
  −(y ln p + (1 − y) ln(1 − p)), p clipped to [ε, 1 − ε] with ε the float64 machine epsilon
  (scikit-learn's ``brier_score_loss`` and ``log_loss``).

**The promote gate** (:class:`PromoteGate`): a candidate with live evidence is promoted only
when at least ``min_scored`` pairs were scored (else: not enough evidence yet) and its Brier
score is at most the current version's × (1 + ``tolerance``) (1 % by default: a candidate
worse by more than that is refused). ``wearwatch models promote --force`` overrides it.

>>> from wearwatch.events import MaintenanceEvent, ModelScore, utc
>>> def s(t, version, p):
...     return ModelScore(ts=utc(t), machine_id="p1", family="risk", version=version, value=p,
...                       served=version == "risk@v0001", rollout="shadow", horizon_s=100.0)
>>> scores = [s(t, v, p) for t in (0, 50, 120, 300) for v, p in
...           (("risk@v0001", 0.5), ("risk@v0002", 0.9 if t < 100 else 0.1))]
>>> truth = [MaintenanceEvent(ts=utc(90), asset_id="p1", kind="failure"),
...          MaintenanceEvent(ts=utc(110), asset_id="p1", kind="repair"),
...          MaintenanceEvent(ts=utc(330), asset_id="p1", kind="maintenance")]
>>> c = compare(scores, truth, "risk@v0001", "risk@v0002")
>>> c.pairs, c.current.brier, round(c.candidate.brier, 4)  # t=300 is censored (330 < 400)
(3, 0.25, 0.01)
>>> PromoteGate(min_scored=3).verdict(c).ok
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss

from wearwatch.bus.base import Log, read_events
from wearwatch.events import MaintenanceEvent, ModelScore
from wearwatch.learn.risk.labels import event_micros, label_windows
from wearwatch.learn.risk.truth import read_maintenance_topic
from wearwatch.store.registry import ModelRegistry, RegistryError, version_tag
from wearwatch.topics import MAINTENANCE, MODEL_SCORES


def brier(
    probability: Sequence[float] | np.ndarray, outcome: Sequence[float] | np.ndarray
) -> float:
    """Mean squared difference between probabilities and 0/1 outcomes (NaN when empty).

    >>> round(brier([0.9, 0.2], [1, 0]), 6)
    0.025
    """
    p, y = np.asarray(probability, dtype=np.float64), np.asarray(outcome, dtype=np.int64)
    return float(brier_score_loss(y, p, labels=[0, 1])) if len(p) else math.nan


def logarithmic_loss(
    probability: Sequence[float] | np.ndarray, outcome: Sequence[float] | np.ndarray
) -> float:
    """Mean negative log-likelihood of the outcomes (NaN when empty).

    >>> round(logarithmic_loss([0.9, 0.2], [1, 0]), 4)
    0.1643
    """
    p, y = np.asarray(probability, dtype=np.float64), np.asarray(outcome, dtype=np.int64)
    return float(log_loss(y, p, labels=[0, 1])) if len(p) else math.nan


def outcomes(
    scores: Sequence[ModelScore], maintenance: Sequence[MaintenanceEvent], end: datetime
) -> np.ndarray:
    """Per prediction (in order): its outcome 1.0 / 0.0, or NaN when it has none yet
    (censored: ``ts + horizon > end``) or none at all (the machine was down)."""
    out = np.full(len(scores), np.nan)
    if not scores:
        return out
    horizons = np.array([_horizon(s) for s in scores])
    ts = pd.to_datetime([s.ts for s in scores], utc=True)
    frame = pd.DataFrame({"ts": ts, "machine_id": [s.machine_id for s in scores], "window_s": 0.0})
    end_us = event_micros(end)
    stamp = np.array([event_micros(s.ts) for s in scores], dtype=np.int64)
    for horizon in np.unique(horizons):
        rows = np.flatnonzero(horizons == horizon)
        labels = label_windows(frame.iloc[rows], maintenance, float(horizon), end=end)
        passed = stamp[rows] + round(float(horizon) * 1e6) <= end_us
        out[rows] = np.where(passed, labels, np.nan)
    return out


def _horizon(score: ModelScore) -> float:
    if score.horizon_s is None:
        raise ValueError(
            f"model score of {score.version} for {score.machine_id} at {score.ts.isoformat()}: "
            "field `horizon_s` is None; live metrics need a risk model's horizon"
        )
    return float(score.horizon_s)


@dataclass(frozen=True)
class VersionMetrics:
    """One version's live figures on the compared pairs."""

    version: str
    predictions: int  # every prediction of it in the log (scored or not)
    scored: int  # predictions with an outcome, on pairs both versions scored
    brier: float
    log_loss: float


@dataclass(frozen=True)
class Comparison:
    current: VersionMetrics
    candidate: VersionMetrics
    pairs: int  # (machine, ts) pairs both versions scored and both have an outcome for
    end: datetime | None  # the log's event time the censoring used

    def to_dict(self) -> dict[str, Any]:
        def clean(m: VersionMetrics) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in asdict(m).items()}  # fmt: skip

        return {
            "current": clean(self.current),
            "candidate": clean(self.candidate),
            "pairs": self.pairs,
            "end": None if self.end is None else self.end.isoformat(),
        }


def compare(
    scores: Iterable[ModelScore],
    maintenance: Sequence[MaintenanceEvent],
    current: str,
    candidate: str,
    end: datetime | None = None,
) -> Comparison:
    """Brier score and log loss of ``current`` and ``candidate`` (version tags such as
    ``risk@v0003``) on the same scored pairs (module docstring); ``end`` defaults to the
    latest event time in ``scores`` and ``maintenance``."""
    by_version: dict[str, dict[tuple[str, datetime], ModelScore]] = {current: {}, candidate: {}}
    latest: list[datetime] = [e.ts for e in maintenance]
    for s in scores:
        latest.append(s.ts)
        if s.version in by_version:
            by_version[s.version][(s.machine_id, s.ts)] = s  # a duplicate counts once
    if end is None and latest:
        end = max(latest)
    common = sorted(by_version[current].keys() & by_version[candidate].keys())
    both = [by_version[v][k] for v in (current, candidate) for k in common]
    if end is None or not common:
        labels = np.full(len(both), np.nan)
    else:
        labels = outcomes(both, maintenance, end)
    n = len(common)
    mine, theirs = labels[:n], labels[n:]
    keep = ~np.isnan(mine) & ~np.isnan(theirs)

    def metrics(version: str, part: slice) -> VersionMetrics:
        p = np.array([s.value for s in both[part]], dtype=np.float64)[keep]
        y = labels[part][keep]
        return VersionMetrics(
            version,
            len(by_version[version]),
            int(keep.sum()),
            brier(p, y),
            logarithmic_loss(p, y),
        )

    return Comparison(
        metrics(current, slice(0, n)), metrics(candidate, slice(n, 2 * n)), int(keep.sum()), end
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


@dataclass(frozen=True)
class PromoteGate:
    """Promote a candidate with live evidence only if ≥ ``min_scored`` pairs were scored and
    its Brier score ≤ the current one's × (1 + ``tolerance``)."""

    tolerance: float = 0.01
    min_scored: int = 100

    def verdict(self, c: Comparison) -> Verdict:
        cur, cand = c.current, c.candidate
        if c.pairs < self.min_scored:
            return Verdict(
                False,
                f"{cand.version}: only {c.pairs} live predictions scored against their outcome "
                f"beside {cur.version} (at least {self.min_scored} needed); wait until more "
                "horizons have passed, or force it",
            )
        limit = cur.brier * (1.0 + self.tolerance)
        if cand.brier > limit:
            return Verdict(
                False,
                f"{cand.version} is worse live than {cur.version}: Brier {cand.brier:.4f} vs "
                f"{cur.brier:.4f} on {c.pairs} predictions (allowed ≤ {limit:.4f}); force it "
                "to promote anyway",
            )
        return Verdict(
            True,
            f"{cand.version}: Brier {cand.brier:.4f} vs {cur.brier:.4f} for {cur.version} on "
            f"{c.pairs} predictions",
        )


def read_model_scores(log: Log, topic: str = MODEL_SCORES.name) -> list[ModelScore]:
    """Every retained event of the model-scores topic ([] when the topic does not exist); an
    undecodable record is an error naming where it is (a metric on part of the log would
    mislead)."""
    return read_events(log, topic, ModelScore) if topic in log.topics() else []


def live_comparison(log: Log, registry: ModelRegistry, family: str, candidate: int) -> Comparison:
    """``candidate`` beside the family's current version on the log's model scores and
    maintenance ground truth (a RegistryError when there is no current version)."""
    current = registry.current_version(family)
    if current is None:
        raise RegistryError(f"model {family!r} has no current version to compare with")
    scores = [s for s in read_model_scores(log) if s.family == family]
    truth = read_maintenance_topic(log) if MAINTENANCE.name in log.topics() else []
    return compare(
        scores, truth, f"{family}@{version_tag(current)}", f"{family}@{version_tag(candidate)}"
    )


def promotion_verdict(
    log: Log, registry: ModelRegistry, family: str, version: int, gate: PromoteGate | None = None
) -> Verdict | None:
    """The gate's verdict on promoting ``version``, or ``None`` when there is nothing to gate:
    no current version, ``version`` is current, or it has no live predictions and is not the
    running rollout's candidate (a freshly trained model is promoted on its offline metrics, as
    the warm-up does). The one rule the CLI and the API both apply."""
    current = registry.current_version(family)
    if current is None or current == version:
        return None
    comparison = live_comparison(log, registry, family, version)
    rollout = registry.rollout(family)
    if comparison.candidate.predictions == 0 and (rollout is None or rollout.version != version):
        return None
    return (gate or PromoteGate()).verdict(comparison)
