"""A prepared platform for the API tests: real twin output through the real workers.

Built once per test process (both API test modules load this file by path and share the
cached result): a fleet twin (6 machines, faults 20x as frequent and fast as shipped, so a
day has failures and alarms) and a mill twin write to an embedded log; the fleet and mill
workers process it to the end; the anomaly and risk models they score with were trained on a
separate twin run and are registered (current) in the registry, next to a small RUL model fit
on synthetic engines. ~20 s.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from wearwatch.bus.sqlite import SqliteLog
from wearwatch.learn.rul.data import OP_SETTINGS, SENSORS
from wearwatch.runtime.flow_worker import FlowWorker
from wearwatch.runtime.worker import WorkerOptions
from wearwatch.store.registry import ModelRegistry

MACHINES = 6
DAYS = 1.0
TICK_S = 60.0
WINDOWS = (600.0, 1800.0)
PASSES = 400
TOKEN = "test-token-0123456789"


@dataclass(frozen=True)
class Prepared:
    root: Path
    log_path: Path
    registry_dir: Path
    anomaly: Any
    risk: Any
    rul: Any
    limits: dict[str, Any]

    def copy(self, into: Path) -> Prepared:
        """A private copy (log and registry) a test may change."""
        shutil.copytree(self.root, into, dirs_exist_ok=True)
        return Prepared(
            into, into / "log.db", into / "models", self.anomaly, self.risk, self.rul, self.limits
        )


def _evaluation_config() -> Any:
    from wearwatch.pipelines.fleet.evaluate import EvaluationConfig
    from wearwatch.twin.fleet.config import load_fleet_config

    base = load_fleet_config()
    fleet = msgspec.structs.replace(base.fleet, compression=base.fleet.compression * 20)
    config = msgspec.structs.replace(base, fleet=fleet)
    return EvaluationConfig(
        seed=3, machines=MACHINES, days=3.0, tick_s=TICK_S, windows_s=WINDOWS, fleet=config
    )


def synthetic_engines(units: int = 12, seed: int = 5) -> pd.DataFrame:
    """C-MAPSS-shaped run-to-failure engines: sensors drifting towards the end of life."""
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(1, units + 1):
        life = int(rng.integers(80, 140))
        for cycle in range(1, life + 1):
            wear = cycle / life
            row: dict[str, float] = {"unit": unit, "cycle": cycle, "rul": float(life - cycle)}
            for i, name in enumerate(OP_SETTINGS):
                row[name] = float(rng.normal(0.0, 0.001)) if i < 2 else 100.0
            for i, name in enumerate(SENSORS):
                row[name] = 500.0 + 10 * i + (i % 4) * 5.0 * wear**2 + float(rng.normal(0, 0.3))
            rows.append(row)
    return pd.DataFrame(rows)


def _prepare(root: Path) -> Prepared:
    from wearwatch.learn.rul.train import TrainConfig, fit_model
    from wearwatch.pipelines.fleet.evaluate import fleet_config, train_on_twin
    from wearwatch.pipelines.fleet.flow import fleet_pipeline
    from wearwatch.pipelines.mill.flow import mill_flow
    from wearwatch.twin.fleet.publish import publish_fleet
    from wearwatch.twin.fleet.simulation import FleetTwin
    from wearwatch.twin.mill.publish import publish
    from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

    cfg = _evaluation_config()
    trained = train_on_twin(cfg)
    rul = fit_model(synthetic_engines(), "FD001", TrainConfig(n_estimators=30, clf_n_estimators=15))
    registry = ModelRegistry(root / "models")
    registry.register("anomaly", trained.anomaly, promote=True)
    registry.register("risk", trained.risk, promote=True)
    registry.register("rul-FD001", rul, promote=True)

    log_path = root / "log.db"
    twin = FleetTwin(fleet_config(TICK_S, cfg.fleet), MACHINES, cfg.seed)
    limits = twin.hard_limits()
    log = SqliteLog(log_path)
    publish_fleet(log, twin, round(DAYS * 86400 / TICK_S))
    mill = MillTwin(MillTwinConfig(seed=7, scenario="abrupt", planned_passes=PASSES))
    publish(log, mill.events(max_passes=PASSES))
    log.close()
    options = WorkerOptions(
        exit_when_idle=True, poll_timeout_s=0.0, watermark_delay_s=cfg.watermark_delay_s
    )
    flow = fleet_pipeline(
        registry.load("anomaly"),
        registry.load("risk"),
        cfg.alarms,
        WINDOWS,
        cfg.grace_s,
        limits=limits,
    )
    FlowWorker(lambda: SqliteLog(log_path), flow, "fleet", options).run(install_signals=False)
    FlowWorker(lambda: SqliteLog(log_path), mill_flow(seed=7), "mill", options).run(
        install_signals=False
    )
    return Prepared(root, log_path, root / "models", trained.anomaly, trained.risk, rul, limits)


@functools.cache
def prepared() -> Prepared:
    """The shared prepared platform data (built on first use, kept for the process)."""
    return _prepare(Path(tempfile.mkdtemp(prefix="wearwatch-api-")))
