"""RUL inference for one engine from its cycle history."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wearwatch.learn.rul.data import COLUMNS
from wearwatch.learn.rul.model import RulModel


def predict_engine(
    history: pd.DataFrame, model: Any, *, family: str = "rul-FD001"
) -> dict[str, float]:
    """RUL at the last cycle of ``history`` and P(RUL ≤ horizon), for ONE engine.

    ``history`` holds C-MAPSS columns (``cycle``, ``op_setting_1..3``, ``sensor_1..21``; ``unit``
    optional). ``model`` is a :class:`RulModel` or a model registry, in which case the current
    version of ``family`` is loaded (checksum-verified).
    """
    if not isinstance(model, RulModel):
        if hasattr(model, "load"):
            model = model.load(family)
        if not isinstance(model, RulModel):
            raise TypeError(f"expected a RulModel or a ModelRegistry, got {type(model).__name__}")
    frame = history.copy()
    if "unit" not in frame.columns:
        frame["unit"] = 0
    needed = [c for c in COLUMNS if c not in frame.columns]
    if needed:
        raise ValueError(f"history is missing C-MAPSS columns: {', '.join(needed)}")
    if frame.empty:
        raise ValueError("history is empty: need at least one cycle")
    if frame["unit"].nunique() != 1:
        units = sorted(frame["unit"].unique().tolist())
        raise ValueError(f"history must hold ONE engine, got units {units}")
    if frame["cycle"].duplicated().any():
        raise ValueError("history has duplicate cycles")
    if frame[COLUMNS].isna().any().any():
        raise ValueError("history has missing values")
    last = model.predict_last(frame[COLUMNS])
    return {
        "rul": float(last["rul"].iloc[0]),
        "horizon_probability": float(np.clip(last["horizon_probability"].iloc[0], 0.0, 1.0)),
    }
