"""First start: train the initial models from a short accelerated run, so anomaly, risk and RUL
scores are live from the first minute.

The fleet twin runs in virtual time (another seed than the live plant's: the models never see
the plant they will watch), its readings go through the fleet flow's own windows, the anomaly
detectors are fitted on the windows its ground truth calls healthy and the risk model on every
window, labelled by its failures — :func:`~wearwatch.pipelines.fleet.evaluate.train_on_twin`,
the protocol of ``wearwatch fleet evaluate``, with the trainers behind ``wearwatch train
anomaly`` and ``train risk``. Both models are registered and promoted: the fleet worker
needs them before it starts. RUL comes from NASA C-MAPSS FD001 when the data is there
(:func:`rul_plan`; ``wearwatch up`` runs ``wearwatch train cmapss`` as a background job, so
the dashboard does not wait for it); else RUL stays off, and the plan says how to turn it on.

The mill needs no warm-up: its pipeline learns online, and ``wearwatch up`` gives it a head
start instead (the mill twin publishes its first hours as fast as possible).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wearwatch.launch.models import FLEET_FAMILIES
from wearwatch.learn.rul.data import missing_files
from wearwatch.pipelines.fleet.evaluate import EvaluationConfig, train_on_twin
from wearwatch.store.registry import ModelRegistry, finite_json

RUL_SUBSET = "FD001"
RUL_FAMILY = f"rul-{RUL_SUBSET}"
#: (stage, fraction of the whole warm-up done)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class WarmupPlan:
    """The training run: ``machines`` machines for ``days`` of virtual time.

    Defaults (20 machines × 14 days at a 30 s tick, the twin's compression 30; seed 1007):
    94,080 feature windows, 445 of them within 24 h of a failure, failures on the risk
    model's held-out machines too (PR-AUC 0.96); 35 s on this machine's 2 cores at load 5.
    Ten days left one held-out failure; fewer machines, none.
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
    #: Feature windows of the run, and those the risk labels put within the horizon of a failure.
    windows: int = 0
    positive_windows: int = 0
    #: The risk model (LightGBM) on held-out machines after the split's cut.
    risk_pr_auc: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def needs_warmup(registry_dir: Path) -> bool:
    """True when the registry lacks a current version of a family the fleet worker serves."""
    registry = ModelRegistry(registry_dir)
    return any(registry.current_version(family) is None for family in FLEET_FAMILIES)


def rul_plan(registry_dir: Path, cmapss_dir: Path | None) -> str:
    """What to do about RUL: ``"served"`` (a current ``rul-FD001``), ``"train"`` (the data is
    there), else one line saying RUL is off and how to turn it on."""
    if ModelRegistry(registry_dir).current_version(RUL_FAMILY) is not None:
        return "served"
    if cmapss_dir is not None and not missing_files(cmapss_dir, [RUL_SUBSET]):
        return "train"
    return (
        f"RUL is off: C-MAPSS {RUL_SUBSET} not found in {cmapss_dir}; unzip NASA's "
        "CMAPSSData.zip, point WEARWATCH_CMAPSS_DIR at it and run `wearwatch train cmapss` "
        "(it registers the model this run serves)"
    )


def warm_up(registry_dir: Path, plan: WarmupPlan, progress: Progress | None = None) -> WarmupResult:
    """Train and register the fleet's anomaly and risk models; ``progress(stage, fraction)``
    reports as it goes."""
    report = progress or (lambda stage, fraction: None)
    # Shares of the bar, from measured stage times (features dominate).
    twin_share, fit_share = 0.8, 0.2
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
    metrics = finite_json(trained.risk_metrics)
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
    split = trained.risk_metrics["split"]
    result.positive_windows = int(split["train_positives"]) + int(split["test_positives"])
    result.risk_pr_auc = metrics["lightgbm"]["pr_auc"]
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
