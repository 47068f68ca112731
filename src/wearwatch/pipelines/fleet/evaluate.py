"""``wearwatch fleet evaluate``: the fleet twin and the fleet pipeline in virtual time, scored
against the twin's ground truth.

Protocol (nothing is tuned on the evaluation run):

1. **Training run** — a twin with another seed (``train_seed``, default ``seed + 1000``), the
   same fleet size and length. Its readings go through the pipeline's own windows
   (:func:`~wearwatch.pipelines.fleet.features.features_from_readings`); the anomaly detectors
   are fitted on the windows its ground truth says are healthy (no fault, no sensor fault, not
   down, not within ``settle_h`` of a repair), the risk model on all of them with labels from
   its maintenance events.
2. **Evaluation run** — a twin with ``seed``; its readings stream through
   :func:`~wearwatch.pipelines.fleet.flow.fleet_pipeline` (the flow ``wearwatch worker fleet``
   runs, driven in process by :class:`~wearwatch.runtime.harness.StreamRunner`, a day at a
   time). Its alarms and health outputs are scored against its ground truth
   (:mod:`~wearwatch.pipelines.fleet.scoring`); risk ROC-AUC and PR-AUC are those of the
   stream's per-window risk on these machines, none of which the risk model saw.

A month of a 50-machine fleet at the twin's 1 s tick is 1.3 G readings; the evaluation keeps
the physics and compresses the sampling instead: by default one reading per sensor every 30 s
and windows of 5 and 30 minutes — the same pipeline, with sizes that suit the time scale of
wear (hours to days), not of vibration transients.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import average_precision_score, roc_auc_score

from wearwatch import topics
from wearwatch.events import Alarm, FeatureVector, MachineHealth, MaintenanceEvent
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.model import AnomalyModel
from wearwatch.learn.anomaly.training import train_anomaly
from wearwatch.learn.risk.labels import label_windows
from wearwatch.learn.risk.model import RiskModel, train_risk
from wearwatch.pipelines.fleet.alarms import AlarmConfig
from wearwatch.pipelines.fleet.features import reading_records
from wearwatch.pipelines.fleet.flow import fleet_pipeline
from wearwatch.pipelines.fleet.scoring import HOUR_S, alarm_metrics, ground_truth
from wearwatch.runtime.harness import StreamRunner
from wearwatch.store.features import features_to_table
from wearwatch.twin.fleet.config import FleetConfig, load_fleet_config
from wearwatch.twin.fleet.simulation import FleetTwin

DAY_S = 86400.0
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class EvaluationConfig:
    """What is run and how it is scored (defaults: the documented evaluation)."""

    seed: int = 1
    machines: int = 50
    days: float = 30.0
    tick_s: float = 30.0
    windows_s: tuple[float, ...] = (300.0, 1800.0)
    grace_s: float = 30.0
    watermark_delay_s: float = 60.0
    train_seed: int | None = None
    #: Score every window size (True), or only the longest, which alarms and health use
    #: (False: scoring the 5 min windows too costs 6x the scoring time for nothing the
    #: figures use).
    score_all_windows: bool = False
    #: Risk horizon: "fails within H" (machine time).
    horizon_s: float = DAY_S
    #: Failures count as alarmed early with an alarm ≥ medium this long before them.
    lead_s: float = HOUR_S
    #: Detector thresholds; None: the defaults, with Half-Space Trees on the longest window.
    anomaly: AnomalyConfig | None = None
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    #: The twin's configuration (None: the shipped default); its tick is set to ``tick_s``.
    fleet: FleetConfig | None = None
    #: Virtual time fed to the pipeline per step (progress is reported per chunk).
    chunk_s: float = DAY_S

    @property
    def training_seed(self) -> int:
        return self.seed + 1000 if self.train_seed is None else self.train_seed

    def anomaly_config(self) -> AnomalyConfig:
        if self.anomaly is not None:
            return self.anomaly
        return AnomalyConfig(hst_window_s=max(self.windows_s))


def fleet_config(tick_s: float, base: FleetConfig | None = None) -> FleetConfig:
    """The twin's configuration with its tick set to ``tick_s``."""
    cfg = base or load_fleet_config()
    return msgspec.structs.replace(cfg, fleet=msgspec.structs.replace(cfg.fleet, tick_s=tick_s))


def _run_twin(
    twin: FleetTwin, days: float, chunk_s: float, on_chunk: Callable[[Any], None]
) -> list[MaintenanceEvent]:
    """Step the twin through ``days``, a chunk at a time; ``on_chunk(columns)`` per chunk."""
    total = round(days * DAY_S / twin.tick_s)
    per_chunk = max(1, round(chunk_s / twin.tick_s))
    events: list[MaintenanceEvent] = []
    done = 0
    while done < total:
        ticks = min(per_chunk, total - done)
        cols, truth = twin.step(ticks)
        events.extend(truth)
        on_chunk(cols)
        done += ticks
    return events


@dataclass
class Trained:
    anomaly: AnomalyModel
    risk: RiskModel
    anomaly_summary: dict[str, Any]
    risk_metrics: dict[str, Any]


def twin_features(
    twin: FleetTwin, cfg: EvaluationConfig, progress: Progress | None, stage: str
) -> tuple[pd.DataFrame, list[MaintenanceEvent]]:
    """A twin run's feature-store frame (the pipeline's own windows) and ground truth."""
    runner = StreamRunner(_features_flow(cfg), watermark_delay_s=cfg.watermark_delay_s)
    tables: list[pa.Table] = []
    chunks = 0

    def feed(cols: Any) -> None:
        nonlocal chunks
        vectors: list[FeatureVector] = []
        for record in reading_records(cols):
            vectors.extend(runner.feed([record]).get(topics.FEATURES.name, []))
        if vectors:
            tables.append(features_to_table(vectors))
        chunks += 1
        if progress is not None:
            progress(stage, chunks * cfg.chunk_s / (cfg.days * DAY_S))

    events = _run_twin(twin, cfg.days, cfg.chunk_s, feed)
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    return frame, events


def train_on_twin(cfg: EvaluationConfig, progress: Progress | None = None) -> Trained:
    """Fit the detectors (on the windows its ground truth calls healthy) and the risk model
    (on every window, labelled by its failures) on a separate training run of the twin."""
    twin = FleetTwin(fleet_config(cfg.tick_s, cfg.fleet), cfg.machines, cfg.training_seed)
    frame, events = twin_features(twin, cfg, progress, "training run")
    anomaly = train_anomaly(frame, twin.hard_limits(), events, cfg.anomaly_config())
    risk, metrics = train_risk(frame, events, cfg.horizon_s, cfg.training_seed)
    return Trained(anomaly.model, risk, anomaly.summary, metrics)


def _features_flow(cfg: EvaluationConfig) -> Any:
    from wearwatch.pipelines.fleet_features import fleet_features

    return fleet_features(cfg.windows_s, cfg.grace_s)


@dataclass
class EvaluationRun:
    """What a run produced: the stream's alarms and health outputs, the ground truth."""

    alarms: list[Alarm]
    health: list[MachineHealth]
    events: list[MaintenanceEvent]
    end_s: float
    counts: dict[str, int]


def run_evaluation(
    cfg: EvaluationConfig, trained: Trained, progress: Progress | None = None
) -> EvaluationRun:
    """Stream the evaluation twin through the fleet pipeline with the trained models."""
    twin = FleetTwin(fleet_config(cfg.tick_s, cfg.fleet), cfg.machines, cfg.seed)
    flow = fleet_pipeline(
        trained.anomaly,
        trained.risk,
        cfg.alarms,
        cfg.windows_s,
        cfg.grace_s,
        limits=twin.hard_limits(),
        score_windows_s=None if cfg.score_all_windows else (max(cfg.windows_s),),
    )
    runner = StreamRunner(flow, watermark_delay_s=cfg.watermark_delay_s)
    alarms: list[Alarm] = []
    health: list[MachineHealth] = []
    counts = {"readings": 0, "feature_vectors": 0, "scores": 0}
    chunks = 0

    def feed(cols: Any) -> None:
        nonlocal chunks
        counts["readings"] += len(cols)
        for record in reading_records(cols):
            out = runner.feed([record])
            alarms.extend(out.get(topics.ALARMS.name, []))
            health.extend(out.get(topics.HEALTH.name, []))
            counts["feature_vectors"] += len(out.get(topics.FEATURES.name, []))
            counts["scores"] += len(out.get(topics.SCORES.name, []))
        chunks += 1
        if progress is not None:
            progress("evaluation run", chunks * cfg.chunk_s / (cfg.days * DAY_S))

    events = _run_twin(twin, cfg.days, cfg.chunk_s, feed)
    counts["late_readings"] = int(runner.counters["late"])
    counts["dead_letters"] = int(runner.counters["dead_lettered"])
    return EvaluationRun(alarms, health, events, twin.now_s, counts)


def evaluate_fleet(cfg: EvaluationConfig, progress: Progress | None = None) -> dict[str, Any]:
    """One evaluation (see the module docstring); a JSON-ready dict of figures."""
    started = time.perf_counter()
    trained = train_on_twin(cfg, progress)
    train_s = time.perf_counter() - started
    run = run_evaluation(cfg, trained, progress)
    return {
        **figures(cfg, run),
        "tick_s": cfg.tick_s,
        "windows_s": list(cfg.windows_s),
        **run.counts,
        "training": {
            "windows": trained.anomaly_summary["rows"],
            "healthy_windows": trained.anomaly_summary["healthy_rows"],
            "risk_metrics": trained.risk_metrics,
        },
        "seconds": {
            "training": round(train_s, 1),
            "evaluation": round(time.perf_counter() - started - train_s, 1),
        },
    }


def figures(cfg: EvaluationConfig, run: EvaluationRun) -> dict[str, Any]:
    """The headline figures of a run (definitions in :mod:`.scoring`)."""
    truth = ground_truth(run.events, run.end_s)
    return {
        "seed": cfg.seed,
        "train_seed": cfg.training_seed,
        "machines": cfg.machines,
        "days": cfg.days,
        **alarm_metrics(run.alarms, truth, cfg.machines, cfg.days, cfg.lead_s),
        **risk_auc(run.health, run.events, cfg.horizon_s),
    }


def risk_auc(
    health: Sequence[MachineHealth], events: Sequence[MaintenanceEvent], horizon_s: float
) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC of the stream's per-window risk against "fails within the horizon"
    (windows the labels exclude, e.g. while a machine is down, are left out)."""
    if not health:
        return {"risk_roc_auc": None, "risk_pr_auc": None, "risk_windows": 0}
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([h.ts for h in health], utc=True),
            "machine_id": [h.machine_id for h in health],
            "window_s": 0.0,
        }
    )
    labels = np.asarray(label_windows(frame, list(events), horizon_s), dtype=float)
    risk = np.array([h.risk for h in health])
    keep = ~np.isnan(labels)
    y, p = labels[keep], risk[keep]
    if len(np.unique(y)) < 2:
        return {"risk_roc_auc": None, "risk_pr_auc": None, "risk_windows": int(keep.sum())}
    return {
        "risk_roc_auc": round(float(roc_auc_score(y, p)), 4),
        "risk_pr_auc": round(float(average_precision_score(y, p)), 4),
        "risk_windows": int(keep.sum()),
        "risk_positive_share": round(float(y.mean()), 4),
    }
