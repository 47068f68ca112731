"""First start: train the initial models from a short accelerated run, so anomaly, risk and RUL
scores are live from the first minute.

The fleet twin runs in virtual time (another seed than the live plant's: the models never see
the plant they will watch), its readings go through the fleet flow's own windows, the anomaly
detectors are fitted on the windows its ground truth calls healthy and the risk model on every
window, labelled by its failures — :func:`~wearwatch.pipelines.fleet.evaluate.train_on_twin`,
the protocol of ``wearwatch fleet evaluate``, with the trainers behind ``wearwatch train
anomaly`` and ``train risk``. Both models are registered and promoted. RUL comes from NASA
C-MAPSS FD001 (``wearwatch train cmapss``'s :func:`~wearwatch.learn.rul.train.train_subset`)
when the data is there; else RUL stays off, and the result says how to turn it on.

The mill needs no warm-up: its pipeline learns online, and ``wearwatch up`` gives it a head
start instead (the mill twin publishes its first hours as fast as possible).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wearwatch.learn.rul.data import missing_files
from wearwatch.learn.rul.train import TrainConfig, register_result, train_subset
from wearwatch.pipelines.fleet.evaluate import EvaluationConfig, train_on_twin
from wearwatch.store.registry import ModelRegistry

#: Fleet families the live fleet worker serves; a registry without one needs the warm-up.
FLEET_FAMILIES = ("anomaly", "risk")
RUL_SUBSET = "FD001"
#: (stage, fraction of the whole warm-up done)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class WarmupPlan:
    """The training run: ``machines`` machines for ``days`` of virtual time.

    Defaults (20 machines × 14 days at a 30 s tick, compression 30): about 15 failures and
    180 k readings per machine-week; measured ~30 s for features and both models on this
    machine's 2 shared cores — enough failures for the risk model's held-out machines.
    """

    machines: int = 20
    days: float = 14.0
    seed: int = 1007
    tick_s: float = 30.0
    windows_s: tuple[float, ...] = (300.0, 1800.0)
    grace_s: float = 30.0
    watermark_delay_s: float = 60.0
    #: Machine-days beyond which a large fleet trains on fewer days (time budget).
    max_machine_days: float = 300.0

    def __post_init__(self) -> None:
        if self.machines < 1 or not self.days > 0:
            raise ValueError(f"machines={self.machines}, days={self.days}: expected ≥ 1 and > 0")

    @property
    def effective_days(self) -> float:
        """``days``, shortened so ``machines × days`` stays within the budget (≥ 3 days)."""
        return max(3.0, min(self.days, self.max_machine_days / self.machines))

    def evaluation_config(self) -> EvaluationConfig:
        return EvaluationConfig(
            seed=self.seed,
            train_seed=self.seed,
            machines=self.machines,
            days=self.effective_days,
            tick_s=self.tick_s,
            windows_s=self.windows_s,
            grace_s=self.grace_s,
            watermark_delay_s=self.watermark_delay_s,
            chunk_s=6 * 3600.0,
        )


@dataclass
class WarmupResult:
    """What the warm-up registered (``family@vNNNN``), its figures and how long it took."""

    registered: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    windows: int = 0
    risk_pr_auc: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Why RUL is off (empty when it was trained).
    rul_note: str = ""


def needs_warmup(registry_dir: Path) -> bool:
    """True when the registry lacks a current version of a fleet family."""
    registry = ModelRegistry(registry_dir)
    return any(registry.current_version(family) is None for family in FLEET_FAMILIES)


def warm_up(
    registry_dir: Path,
    plan: WarmupPlan,
    cmapss_dir: Path | None,
    progress: Progress | None = None,
) -> WarmupResult:
    """Train and register the fleet's anomaly and risk models, and RUL when C-MAPSS is found
    in ``cmapss_dir``; ``progress(stage, fraction)`` reports as it goes."""
    report = progress or (lambda stage, fraction: None)
    rul_on = cmapss_dir is not None and not missing_files(cmapss_dir, [RUL_SUBSET])
    # Shares of the bar, from measured stage times (features dominate).
    twin_share, fit_share = (0.6, 0.15) if rul_on else (0.8, 0.2)
    registry = ModelRegistry(registry_dir)
    result = WarmupResult()
    cfg = plan.evaluation_config()

    started = time.perf_counter()
    report(f"fleet twin: {cfg.machines} machines × {cfg.days:g} days", 0.0)

    def twin_progress(stage: str, fraction: float) -> None:
        report(
            f"fleet twin: {cfg.machines} machines × {cfg.days:g} days → features",
            twin_share * min(1.0, fraction),
        )

    trained = train_on_twin(cfg, _Staged(twin_progress, fit_share, report, twin_share))
    result.seconds["fleet"] = round(time.perf_counter() - started, 1)
    anomaly = registry.register(
        "anomaly",
        trained.anomaly,
        params=trained.anomaly.config.to_dict(),
        metrics={k: trained.anomaly_summary[k] for k in ("rows", "healthy_rows", "machines")},
        promote=True,
    )
    metrics = _finite(trained.risk_metrics)
    risk = registry.register(
        "risk",
        trained.risk,
        params={**trained.risk.params, "features": len(trained.risk.feature_names)},
        metrics=metrics,
        promote=True,
    )
    result.registered["anomaly"] = f"anomaly@{anomaly.tag}"
    result.registered["risk"] = f"risk@{risk.tag}"
    result.windows = int(trained.anomaly_summary["rows"])
    split = trained.risk_metrics.get("split", {})
    result.failures = int(split.get("train_failures", 0) or 0) + int(
        split.get("test_failures", 0) or 0
    )
    result.risk_pr_auc = metrics.get("lightgbm", {}).get("pr_auc")
    done = twin_share + fit_share
    report("fleet models registered", done)

    if rul_on:
        assert cmapss_dir is not None
        rul_started = time.perf_counter()

        def rul_progress(name: str, stage: str, fraction: float) -> None:
            report(f"RUL ({name}): {stage}", done + (1.0 - done) * min(1.0, fraction))

        trained_rul = train_subset(
            cmapss_dir, RUL_SUBSET, TrainConfig(seed=plan.seed), rul_progress
        )
        mv = register_result(trained_rul, registry)
        result.registered["rul"] = f"{mv.family}@{mv.tag}"
        result.seconds["rul"] = round(time.perf_counter() - rul_started, 1)
    else:
        result.rul_note = (
            f"RUL is off: C-MAPSS {RUL_SUBSET} not found in {cmapss_dir}; unzip NASA's "
            "CMAPSSData.zip, point WEARWATCH_CMAPSS_DIR at it and run `wearwatch train cmapss` "
            "(it registers the model this run serves)"
        )
    report("warm-up done", 1.0)
    result.seconds["total"] = round(time.perf_counter() - started, 1)
    return result


class _Staged:
    """``train_on_twin``'s progress (its one stage, the training run) onto the warm-up's bar;
    once the run is done, the fit of both models is reported as running."""

    def __init__(
        self, twin: Callable[[str, float], None], fit_share: float, report: Progress, at: float
    ) -> None:
        self.twin, self.fit_share, self.report, self.at = twin, fit_share, report, at

    def __call__(self, stage: str, fraction: float) -> None:
        self.twin(stage, fraction)
        if fraction >= 1.0:
            self.report("fitting the anomaly detectors and the risk model", self.at)


def _finite(value: Any) -> Any:
    """NaN metrics (a single-class test split) become None: the registry stores JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
