"""The trained RUL bundle: fitted features + RUL regressor + failure-horizon classifier.

Stored without pickle (:meth:`RulModel.to_artifacts`): parameters and fitted feature statistics
as JSON, both boosters as LightGBM's text model, the regime KMeans (multi-regime subsets) in
skops format, loaded with skops' default trusted types only. None of these can run code when
loaded, so the model registry can load a model it cannot authenticate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wearwatch.learn.rul.features import FeaturePipeline

_PARAMS, _REGRESSOR, _CLASSIFIER, _REGIMES = (
    "rul.json",
    "regressor.txt",
    "classifier.txt",
    "regimes.skops",
)


@dataclass
class RulModel:
    subset: str
    pipeline: FeaturePipeline
    regressor: Any  # lightgbm.Booster: capped RUL
    classifier: Any  # lightgbm.Booster (binary): P(RUL <= horizon)
    rul_cap: float = 125.0
    horizon: int = 30
    params: dict[str, Any] = field(default_factory=dict)

    artifact_format: ClassVar[str] = "rul-model/1"

    def to_artifacts(self) -> dict[str, bytes]:
        """Data-only artifacts for the model registry (see the module docstring)."""
        meta = {
            "subset": self.subset,
            "rul_cap": self.rul_cap,
            "horizon": self.horizon,
            "params": self.params,
            "pipeline": self.pipeline.to_dict(),
        }
        files = {
            _PARAMS: json.dumps(meta, sort_keys=True, allow_nan=False).encode("utf-8"),
            _REGRESSOR: self.regressor.model_to_string().encode("utf-8"),
            _CLASSIFIER: self.classifier.model_to_string().encode("utf-8"),
        }
        if self.pipeline.regime_model is not None:
            import skops.io

            files[_REGIMES] = skops.io.dumps(self.pipeline.regime_model)
        return files

    @classmethod
    def from_artifacts(cls, files: dict[str, bytes]) -> RulModel:
        import lightgbm as lgb
        from sklearn.cluster import KMeans

        meta = json.loads(files[_PARAMS].decode("utf-8"))
        regime_model = None
        if _REGIMES in files:
            import skops.io

            # trusted=[]: only skops' default trusted types (scikit-learn, numpy); anything
            # else in the file is refused before it is constructed.
            regime_model = skops.io.loads(files[_REGIMES], trusted=[])
            if not isinstance(regime_model, KMeans):
                raise TypeError(f"{_REGIMES} holds a {type(regime_model).__name__}, not a KMeans")
        return cls(
            subset=str(meta["subset"]),
            pipeline=FeaturePipeline.from_dict(meta["pipeline"], regime_model),
            regressor=lgb.Booster(model_str=files[_REGRESSOR].decode("utf-8")),
            classifier=lgb.Booster(model_str=files[_CLASSIFIER].decode("utf-8")),
            rul_cap=float(meta["rul_cap"]),
            horizon=int(meta["horizon"]),
            params=dict(meta["params"]),
        )

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.pipeline.transform(frame)[self.pipeline.feature_names]

    def predict_features(self, feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Capped RUL and P(RUL ≤ horizon) for each feature row."""
        feats = feats[self.pipeline.feature_names]
        rul = np.clip(self.regressor.predict(feats), 0.0, self.rul_cap)
        proba = self.classifier.predict(feats)  # a binary booster predicts P(class 1)
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
