"""The trained RUL bundle: fitted features + RUL regressor + failure-horizon classifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wearwatch.learn.rul.features import FeaturePipeline


@dataclass
class RulModel:
    subset: str
    pipeline: FeaturePipeline
    regressor: Any  # lightgbm.LGBMRegressor on capped RUL
    classifier: Any  # lightgbm.LGBMClassifier for RUL <= horizon
    rul_cap: float = 125.0
    horizon: int = 30
    params: dict[str, Any] = field(default_factory=dict)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.pipeline.transform(frame)[self.pipeline.feature_names]

    def predict_features(self, feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Capped RUL and P(RUL ≤ horizon) for each feature row."""
        feats = feats[self.pipeline.feature_names]
        rul = np.clip(self.regressor.predict(feats), 0.0, self.rul_cap)
        proba = self.classifier.predict_proba(feats)[:, 1]
        return rul.astype(np.float64), proba.astype(np.float64)

    def predict_last(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per unit (sorted): RUL and horizon probability at the unit's last cycle."""
        ordered = frame.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
        feats = self.features(ordered)
        units = ordered["unit"].to_numpy()
        is_last = np.r_[units[1:] != units[:-1], True] if len(units) else np.zeros(0, bool)
        rul, proba = self.predict_features(feats[is_last])
        return pd.DataFrame(
            {
                "unit": units[is_last],
                "cycle": ordered["cycle"].to_numpy()[is_last],
                "rul": rul,
                "horizon_probability": proba,
            }
        )
