"""The failure-risk model: P(the machine fails within H) from a window and its trend.

:func:`train_risk` labels each window of the longest length from real failures
(:func:`~wearwatch.learn.risk.labels.label_windows`), adds the machine's trend
(:class:`~wearwatch.learn.risk.features.TrendFeatures`), holds out machines and a later period
(:func:`~wearwatch.learn.risk.labels.split_by_machine_and_time`) and fits two models on the rest:

- a **logistic regression** baseline (median imputation, standardisation, L2), and
- **LightGBM**, which reads missing values natively; it is the model :meth:`RiskModel.
  predict_proba` serves.

Both are scored on the held-out windows. Probabilities are left uncalibrated-by-reweighting
(no class weights), because the risk levels read them as probabilities: ``high`` ≥ 0.7,
``medium`` ≥ 0.4, else ``low``.

Stored without pickle (:meth:`RiskModel.to_artifacts`): LightGBM's text model, and JSON for the
feature names, the trend configuration and the baseline's imputation values, scaler and
coefficients. Nothing in them can run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from wearwatch.events import MaintenanceEvent, encode
from wearwatch.learn.boosting import lgbm_params
from wearwatch.learn.risk.features import TrendConfig, TrendFeatures
from wearwatch.learn.risk.labels import label_windows, split_by_machine_and_time
from wearwatch.learn.risk.metrics import classification_metrics

RiskLevel = Literal["low", "medium", "high"]
#: Risk level boundaries (inclusive lower bounds).
HIGH, MEDIUM = 0.7, 0.4
_PARAMS, _BOOSTER = "risk.json", "lightgbm.txt"
_KEYS = ("ts", "machine_id", "window_s")


def risk_level(p: float) -> RiskLevel:
    """``high`` at p ≥ 0.7, ``medium`` at p ≥ 0.4, else ``low``.

    >>> [risk_level(p) for p in (0.39999, 0.4, 0.69999, 0.7, 1.0)]
    ['low', 'medium', 'medium', 'high', 'high']
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: a probability in [0, 1] is required, got {p!r}")
    return "high" if p >= HIGH else "medium" if p >= MEDIUM else "low"


@dataclass(frozen=True)
class RiskConfig:
    """Everything :func:`train_risk` decides, with documented defaults."""

    horizon_s: float = 86400.0
    seed: int = 7
    #: Share of machines held out for testing, and the time cut (see the split's docstring).
    test_machines: float = 0.3
    time_cut: float | None = 0.5
    gap_s: float | None = None
    #: Training windows beyond this are thinned evenly (neighbouring windows say nearly the
    #: same thing); every held-out window is scored.
    max_train_rows: int = 300_000
    #: The probability at which accuracy, precision, recall and F1 count a positive.
    threshold: float = 0.5
    short_h: float = 1.0
    long_h: float = 6.0
    baseline_windows: int = 120
    logistic_c: float = 1.0
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 200
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    #: Fixed, with LightGBM's deterministic mode: the same data and seed give the same model.
    #: One thread: on a shared 2-core machine two OpenMP threads ran 5-8x slower (spinning).
    n_jobs: int = 1

    def lgbm_params(self) -> dict[str, Any]:
        return lgbm_params(self, self.n_estimators)


@dataclass(frozen=True)
class LogisticBaseline:
    """A fitted logistic regression as numbers: NaN → ``fill``, then ``(x − mean) / scale``,
    then ``expit(x · coef + intercept)``."""

    fill: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), np.asarray(self.fill), x)
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)
        return expit(z + self.intercept)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, c: float, seed: int) -> LogisticBaseline:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
        filled = imputer.transform(x)
        scaler = StandardScaler().fit(filled)
        lr = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        lr.fit(scaler.transform(filled), y)
        return cls(
            fill=tuple(float(v) for v in imputer.statistics_),
            mean=tuple(float(v) for v in scaler.mean_),
            scale=tuple(float(v) for v in scaler.scale_),
            coef=tuple(float(v) for v in lr.coef_[0]),
            intercept=float(lr.intercept_[0]),
        )


@dataclass
class RiskModel:
    """LightGBM over a window's features and its trend, with the logistic baseline beside it."""

    feature_names: list[str]
    trend: TrendConfig
    horizon_s: float
    booster: Any  # lightgbm.Booster (binary): P(failure within horizon_s)
    baseline: LogisticBaseline
    params: dict[str, Any] = field(default_factory=dict)

    artifact_format: ClassVar[str] = "risk-model/1"

    @property
    def window_s(self) -> float:
        """The window length the model scores (the longest in training)."""
        return self.trend.window_s

    def new_trend(self) -> TrendFeatures:
        """A machine's fresh trend state, configured as in training."""
        return TrendFeatures(self.trend)

    def vector(self, features: dict[str, float]) -> np.ndarray:
        """``features`` as the model's input row (absent → NaN)."""
        get = features.get
        return np.array([get(n, math.nan) for n in self.feature_names], dtype=np.float64)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """A frame's rows as the model's input matrix (absent columns → NaN)."""
        return frame.reindex(columns=self.feature_names).to_numpy(dtype=np.float64)

    def predict_proba(self, features: dict[str, float]) -> float:
        """P(failure within the horizon) for one window's features plus its trend (the output
        of :meth:`TrendFeatures.update`)."""
        return float(self.booster.predict(self.vector(features)[None, :], num_threads=1)[0])

    def predict_many(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """:meth:`predict_proba` for many windows in one call (cheaper per window)."""
        if not rows:
            return np.zeros(0)
        x = np.stack([self.vector(r) for r in rows])
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """LightGBM's probabilities for the rows of a transformed frame."""
        return np.asarray(self.booster.predict(self.matrix(frame)), dtype=np.float64)

    def baseline_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The logistic baseline's probabilities for the rows of a transformed frame."""
        return self.baseline.predict(self.matrix(frame))

    def to_artifacts(self) -> dict[str, bytes]:
        """Data-only artifacts for the model registry (see the module docstring)."""
        meta = {
            "feature_names": self.feature_names,
            "trend": asdict(self.trend),
            "horizon_s": self.horizon_s,
            "baseline": asdict(self.baseline),
            "params": self.params,
        }
        return {
            _PARAMS: json.dumps(meta, sort_keys=True, allow_nan=False).encode("utf-8"),
            _BOOSTER: self.booster.model_to_string().encode("utf-8"),
        }

    @classmethod
    def from_artifacts(cls, files: dict[str, bytes]) -> RiskModel:
        import lightgbm as lgb

        meta = json.loads(files[_PARAMS].decode("utf-8"))
        base = meta["baseline"]
        return cls(
            feature_names=[str(n) for n in meta["feature_names"]],
            trend=TrendConfig(**meta["trend"]),
            horizon_s=float(meta["horizon_s"]),
            booster=lgb.Booster(model_str=files[_BOOSTER].decode("utf-8")),
            baseline=LogisticBaseline(
                fill=tuple(base["fill"]),
                mean=tuple(base["mean"]),
                scale=tuple(base["scale"]),
                coef=tuple(base["coef"]),
                intercept=float(base["intercept"]),
            ),
            params=dict(meta["params"]),
        )


def _thin(rows: np.ndarray, limit: int) -> np.ndarray:
    """Every k-th of ``rows`` so at most ``limit`` remain (deterministic)."""
    step = max(1, math.ceil(len(rows) / limit))
    return rows[::step]


def train_risk(
    features: pd.DataFrame,
    maintenance: Sequence[MaintenanceEvent],
    horizon_s: float = 86400.0,
    seed: int = 7,
    config: RiskConfig | None = None,
) -> tuple[RiskModel, dict[str, Any]]:
    """Fit the baseline and LightGBM on a feature-store frame and score both on held-out
    machines and time; ``horizon_s`` and ``seed`` override ``config``'s.

    Returns the LightGBM model (with the baseline inside) and the metrics: per model
    (``logistic``, ``lightgbm``) accuracy, precision, recall, F1, ROC-AUC and PR-AUC, plus the
    test ``prevalence`` and how the windows were split.
    """
    import lightgbm as lgb

    cfg = RiskConfig(**{**asdict(config or RiskConfig()), "horizon_s": horizon_s, "seed": seed})
    if len(features) == 0:
        raise ValueError("features: the frame is empty; there is nothing to train on")
    window_s = float(features["window_s"].max())
    frame = features[features["window_s"].to_numpy() == window_s]
    frame = frame.sort_values(["machine_id", "ts"], kind="stable").reset_index(drop=True)
    trend = TrendConfig(window_s, cfg.short_h, cfg.long_h, cfg.baseline_windows)
    enriched = TrendFeatures.transform(frame, trend)
    # Sorted: the model must not depend on the order of the frame's columns.
    names = sorted(c for c in enriched.columns if c not in _KEYS)
    y = label_windows(frame, maintenance, cfg.horizon_s)
    split = split_by_machine_and_time(
        frame, cfg.test_machines, cfg.seed, cfg.gap_s, cfg.horizon_s, cfg.time_cut
    )
    labelled = ~np.isnan(y)
    train = _thin(np.flatnonzero(split.train & labelled), cfg.max_train_rows)
    test = np.flatnonzero(split.test & labelled)
    x = enriched[names].to_numpy(dtype=np.float64)
    positives = int(y[train].sum())
    if positives == 0 or positives == len(train):
        raise ValueError(
            f"maintenance: the {len(train)} training windows hold {positives} that fail within "
            f"{cfg.horizon_s:g} s; both classes are needed (more failures, a longer record, "
            "or a longer horizon)"
        )
    baseline = LogisticBaseline.fit(x[train], y[train], cfg.logistic_c, cfg.seed)
    classifier = lgb.LGBMClassifier(**cfg.lgbm_params())
    classifier.fit(pd.DataFrame(x[train], columns=names), y[train].astype(np.int64))
    model = RiskModel(names, trend, cfg.horizon_s, classifier.booster_, baseline, asdict(cfg))
    metrics: dict[str, Any] = {
        "horizon_h": cfg.horizon_s / 3600.0,
        "window_s": window_s,
        "threshold": cfg.threshold,
        "prevalence": float(y[test].mean()) if len(test) else float("nan"),
        "logistic": classification_metrics(baseline.predict(x[test]), y[test], cfg.threshold),
        "lightgbm": classification_metrics(model.booster.predict(x[test]), y[test], cfg.threshold),
        "split": {
            "test_machines": list(split.test_machines),
            "cut": None if split.cut is None else split.cut.isoformat(),
            "gap_h": split.gap_s / 3600.0,
            "train_windows": len(train),
            "train_positives": positives,
            "test_windows": len(test),
            "test_positives": int(y[test].sum()),
            "excluded_windows": int((~labelled).sum()),
            "test_failures": _failures_in(maintenance, set(split.test_machines), frame, test),
        },
    }
    return model, metrics


def _failures_in(
    maintenance: Sequence[MaintenanceEvent],
    machines: set[str],
    frame: pd.DataFrame,
    rows: np.ndarray,
) -> int:
    """Failures of the test machines inside the test period (what the test windows can see)."""
    if len(rows) == 0:
        return 0
    first, last = frame["ts"].iloc[rows].min(), frame["ts"].iloc[rows].max()
    return sum(
        1
        for e in maintenance
        if e.kind == "failure" and e.asset_id in machines and first <= e.ts <= last
    )


def fingerprint(features: pd.DataFrame, maintenance: Sequence[MaintenanceEvent]) -> str:
    """sha256 of the training data (frame rows and maintenance events), for the registry."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    for event in maintenance:
        digest.update(encode(event))
    return digest.hexdigest()
