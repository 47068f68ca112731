"""Training an :class:`AnomalyModel` from files: feature store, limits file, maintenance log.

What ``wearwatch train anomaly`` does before it registers the model: read the Parquet feature
store, leave out windows inside ground-truth faults, fit, and summarise what was fitted. Errors
name the file and, where there is one, the line or key.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wearwatch.events import EventDecodeError, MaintenanceEvent, decode_event
from wearwatch.learn.anomaly.baseline import HardLimits
from wearwatch.learn.anomaly.config import AnomalyConfig
from wearwatch.learn.anomaly.healthy import healthy_windows
from wearwatch.learn.anomaly.model import AnomalyModel

#: Hive partition columns a directory read adds (``date=…/hour=…``): not features.
PARTITION_COLUMNS = ("date", "hour")


def read_features(root: Path) -> pd.DataFrame:
    """The feature-store frame under ``root`` (partition columns dropped)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"feature store {root}: no such directory or file")
    frame = pd.read_parquet(root)
    frame = frame.drop(columns=[c for c in PARTITION_COLUMNS if c in frame.columns])
    for column in ("ts", "machine_id", "window_s"):
        if column not in frame.columns:
            raise ValueError(f"feature store {root}: missing column `{column}`")
    frame["machine_id"] = frame["machine_id"].astype(str)
    return frame.sort_values(["machine_id", "window_s", "ts"], kind="stable").reset_index(drop=True)


def load_limits(path: Path) -> dict[str, Any]:
    """Machine → sensor → [low, high] from a TOML file (``.toml``) or JSON (anything else)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"limits file {path}: no such file") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"limits file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"limits file {path}: expected a table of machine → sensor → [low, high]")
    try:
        HardLimits(data)
    except ValueError as exc:
        raise ValueError(f"limits file {path}: {exc}") from None
    return data


def load_maintenance(path: Path) -> list[MaintenanceEvent]:
    """Maintenance events from a JSON-lines file (blank lines skipped)."""
    path = Path(path)
    out = []
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"maintenance file {path}: no such file") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(decode_event(line, MaintenanceEvent))
        except EventDecodeError as exc:
            raise ValueError(f"maintenance file {path}, line {number}: {exc}") from None
    return out


@dataclass(frozen=True)
class TrainedAnomaly:
    model: AnomalyModel
    rows: int
    healthy_rows: int
    summary: dict[str, Any]


def train_anomaly(
    frame: pd.DataFrame,
    limits: Mapping[str, Any] | None = None,
    maintenance: list[MaintenanceEvent] | None = None,
    config: AnomalyConfig | None = None,
) -> TrainedAnomaly:
    """Fit on the healthy windows of ``frame`` and summarise the result."""
    healthy = healthy_windows(frame, maintenance) if maintenance else frame
    if len(healthy) == 0:
        raise ValueError("no healthy windows left to fit on (every window is inside a fault)")
    model = AnomalyModel.fit(healthy, limits, config)
    machines = sorted(frame["machine_id"].astype(str).unique())
    own = {m for m, _ in model.baselines.own}
    summary = {
        "rows": len(frame),
        "healthy_rows": len(healthy),
        "machines": len(machines),
        "machines_with_own_baseline": len(own),
        "machines_on_fallback": sorted(set(machines) - own),
        "fallback_baselines": [
            {"window_s": b.window_s, "sensors": list(b.sensors), "windows": b.windows}
            for bs in model.baselines.fallbacks.values()
            for b in bs
        ],
        "pca": [
            {
                "window_s": w,
                "sensors": list(s),
                "inputs": len(d.features),
                "components": int(d.components.shape[0]),
                "t2_threshold": d.t2_threshold,
                "q_threshold": None if d.q_threshold == float("inf") else d.q_threshold,
            }
            for (w, s), d in sorted(model.pca.items())
        ],
        "thresholds": {
            "z_watch": model.config.z_watch,
            "z_medium": model.config.z_medium,
            "z_high": model.config.z_high,
            "persistence": model.config.persistence,
            "hst_quantile": model.config.hst_quantile if model.config.hst else None,
        },
    }
    return TrainedAnomaly(model, len(frame), len(healthy), summary)
