"""Training and official-test evaluation of the C-MAPSS RUL models.

Recipe: past-only per-cycle features (:mod:`wearwatch.learn.rul.features`), every training
cycle as a sample with its RUL capped at 125, a LightGBM regressor for RUL and a LightGBM
classifier for "fails within 30 cycles". Evaluation follows the literature: one prediction per
official test engine at its last cycle, scored against the true RUL capped at 125 (RMSE, MAE,
PHM08 score); the horizon classifier is scored on the same engines (positive: true RUL ≤ 30).

:func:`cross_validate` is the check that needs no test set: GroupKFold by engine on the training
set, each held-out engine cut at a random cycle and scored like a test engine.
:func:`seed_spread` summarises runs over several seeds as mean ± sample standard deviation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wearwatch.learn.boosting import lgbm_params
from wearwatch.learn.rul.data import N_CONDITIONS, CmapssSubset, load_subset
from wearwatch.learn.rul.features import FeaturePipeline
from wearwatch.learn.rul.metrics import horizon_metrics, mae, phm08_score, rmse
from wearwatch.learn.rul.model import RulModel

#: Progress callback: (subset, stage description, fraction of this subset done in [0, 1]).
Progress = Callable[[str, str, float], None]


@dataclass(frozen=True)
class TrainConfig:
    rul_cap: float = 125.0
    horizon: int = 30
    seed: int = 7
    n_estimators: int = 600
    learning_rate: float = 0.03
    num_leaves: int = 31
    min_child_samples: int = 50
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    reg_lambda: float = 1.0
    clf_n_estimators: int = 300
    n_jobs: int = 2
    features: str = "history"  # FeaturePipeline kinds: whole history or trailing window
    window: int = 30

    def lgbm_params(self, n_estimators: int) -> dict[str, Any]:
        return lgbm_params(self, n_estimators)


@dataclass
class SubsetResult:
    subset: str
    model: RulModel
    metrics: dict[str, Any]
    train_seconds: float
    data_hash: str
    config: TrainConfig
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` shape for one subset."""
        m = self.metrics
        return {
            "rmse": m["rmse"],
            "score": m["score"],
            "mae": m["mae"],
            "horizon": dict(m["horizon"]),
            "train_seconds": round(self.train_seconds, 2),
        }


def _noop(subset: str, stage: str, fraction: float) -> None:
    return None


def fit_model(
    train: Any,
    subset: str,
    config: TrainConfig,
    progress: Progress = _noop,
) -> RulModel:
    """Fit features, regressor and horizon classifier on a training frame with a ``rul`` column."""
    import lightgbm as lgb

    progress(subset, "features", 0.02)
    pipeline = FeaturePipeline(
        n_regimes=N_CONDITIONS.get(subset, 1),
        seed=config.seed,
        rul_cap=config.rul_cap,
        features=config.features,
        window=config.window,
    ).fit(train)
    ordered = train.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
    feats = pipeline.transform(ordered)[pipeline.feature_names]
    rul = ordered["rul"].to_numpy(dtype=np.float64)
    y_reg = np.minimum(rul, config.rul_cap)
    y_clf = (rul <= config.horizon).astype(np.int64)

    total = config.n_estimators + config.clf_n_estimators
    step = max(1, total // 100)

    def tracker(offset: int, stage: str) -> Callable[[Any], None]:
        def callback(env: Any) -> None:
            done = offset + env.iteration + 1
            if done % step == 0 or env.iteration + 1 == env.end_iteration:
                progress(subset, stage, 0.1 + 0.85 * done / total)

        return callback

    progress(subset, "RUL regressor", 0.1)
    regressor = lgb.LGBMRegressor(**config.lgbm_params(config.n_estimators))
    regressor.fit(feats, y_reg, callbacks=[tracker(0, "RUL regressor")])
    progress(subset, "horizon classifier", 0.1 + 0.85 * config.n_estimators / total)
    classifier = lgb.LGBMClassifier(**config.lgbm_params(config.clf_n_estimators))
    classifier.fit(feats, y_clf, callbacks=[tracker(config.n_estimators, "horizon classifier")])
    return RulModel(
        subset=subset,
        pipeline=pipeline,
        regressor=regressor.booster_,
        classifier=classifier.booster_,
        rul_cap=config.rul_cap,
        horizon=config.horizon,
        params=asdict(config),
    )


def evaluate(model: RulModel, data: CmapssSubset) -> dict[str, Any]:
    """Official-test metrics: one prediction per test engine at its last cycle."""
    return score_last_cycles(model, data.test, data.test_rul)


def score_last_cycles(model: RulModel, frame: Any, true_rul: Any) -> dict[str, Any]:
    """Metrics of one prediction per engine of ``frame`` at its last cycle (units in order)."""
    last = model.predict_last(frame)
    if len(last) != len(true_rul):
        raise ValueError(f"{len(last)} test engines but {len(true_rul)} true RUL values")
    return prediction_metrics(
        last["rul"].to_numpy(), last["horizon_probability"].to_numpy(), true_rul, model
    )


def prediction_metrics(pred: Any, proba: Any, true_rul: Any, model: RulModel) -> dict[str, Any]:
    """RMSE / PHM08 score / MAE against the truth capped at the model's cap, horizon metrics."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true_rul, dtype=np.float64)
    capped = np.minimum(true, model.rul_cap)
    return {
        "rmse": round(rmse(pred, capped), 3),
        "score": round(phm08_score(pred, capped), 1),
        "mae": round(mae(pred, capped), 3),
        "horizon": {
            k: round(v, 3)
            for k, v in horizon_metrics(np.asarray(proba), true <= model.horizon).items()
        },
        # Against the uncapped truth, for reference (papers differ on this).
        "rmse_uncapped_truth": round(rmse(pred, true), 3),
        "score_uncapped_truth": round(phm08_score(pred, true), 1),
        "n_test_engines": len(true),
    }


#: Shortest history a held-out engine is cut to in :func:`cross_validate` (the official
#: FD001 test set's shortest engine has 31 cycles).
MIN_CUT_CYCLES = 31


def cut_engines(frame: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Each engine cut at a uniformly drawn cycle (at least :data:`MIN_CUT_CYCLES` kept when it
    has them), like the official test files; returns the cut rows and each engine's true RUL.

    >>> f = pd.DataFrame({"unit": [1] * 40 + [2] * 5, "cycle": [*range(1, 41), *range(1, 6)]})
    >>> f["rul"] = f.groupby("unit")["cycle"].transform("max") - f["cycle"]
    >>> cut, rul = cut_engines(f, np.random.default_rng(0))
    >>> [int(n) for n in cut.groupby("unit").size()], rul.tolist()
    ([39, 5], [1.0, 0.0])
    """
    ordered = frame.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
    keep = np.zeros(len(ordered), dtype=bool)
    truth: list[float] = []
    units = ordered["unit"].to_numpy()
    for unit in pd.unique(units):
        rows = np.flatnonzero(units == unit)
        n = len(rows)
        length = int(rng.integers(min(MIN_CUT_CYCLES, n), n + 1))
        keep[rows[:length]] = True
        truth.append(float(ordered["rul"].iloc[rows[length - 1]]))
    return ordered[keep].reset_index(drop=True), np.asarray(truth, dtype=np.float64)


def _spread(values: list[float], digits: int) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value).

    >>> _spread([10.0, 11.0, 12.0], 3)
    {'mean': 11.0, 'std': 1.0}
    """
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": round(float(arr.mean()), digits), "std": round(std, digits)}


def cross_validate(
    train: pd.DataFrame,
    subset: str,
    config: TrainConfig,
    folds: int = 5,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """GroupKFold by engine on a training frame; every held-out engine cut by :func:`cut_engines`.

    Features, regimes and models are fitted on the training folds only. Returns mean ± std over
    folds of RMSE / PHM08 score / MAE (truth capped like the test set), the per-fold figures, and
    the same metrics pooled over every held-out engine (``pooled``: one prediction per training
    engine, so its score sums over as many engines as the subset has — FD001's 100 training
    engines match its 100 test engines).
    """
    from sklearn.model_selection import GroupKFold

    if folds < 2:
        raise ValueError(f"folds={folds}: cross-validation needs at least 2")
    engines = train["unit"].nunique()
    if folds > engines:
        raise ValueError(f"folds={folds}: more folds than the {engines} training engines")
    rng = np.random.default_rng(config.seed)
    per_fold: list[dict[str, Any]] = []
    pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    splitter = GroupKFold(n_splits=folds)
    for k, (fit_rows, held_rows) in enumerate(splitter.split(train, groups=train["unit"])):

        def fold_progress(name: str, stage: str, fraction: float, k: int = k) -> None:
            progress(name, f"fold {k + 1}/{folds}: {stage}", (k + fraction) / folds)

        model = fit_model(train.iloc[fit_rows], subset, config, fold_progress)
        cut, truth = cut_engines(train.iloc[held_rows], rng)
        last = model.predict_last(cut)
        pred, proba = last["rul"].to_numpy(), last["horizon_probability"].to_numpy()
        pooled.append((pred, proba, truth))
        metrics = prediction_metrics(pred, proba, truth, model)
        per_fold.append({k: metrics[k] for k in ("rmse", "score", "mae", "n_test_engines")})
    return {
        "folds": folds,
        "rmse": _spread([f["rmse"] for f in per_fold], 3),
        "score": _spread([f["score"] for f in per_fold], 1),
        "mae": _spread([f["mae"] for f in per_fold], 3),
        "per_fold": per_fold,
        "pooled": {
            k: v
            for k, v in prediction_metrics(
                *(np.concatenate(parts) for parts in zip(*pooled, strict=True)), model
            ).items()
            if k in ("rmse", "score", "mae", "n_test_engines")
        },
    }


def seed_spread(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of the per-seed :meth:`SubsetResult.summary` figures.

    >>> seed_spread({1: {"rmse": 11.0, "score": 200.0, "mae": 8.0},
    ...              2: {"rmse": 12.0, "score": 220.0, "mae": 9.0}})["rmse"]
    {'mean': 11.5, 'std': 0.707}
    """
    runs = list(summaries.values())
    return {
        "seeds": list(summaries),
        "rmse": _spread([r["rmse"] for r in runs], 3),
        "score": _spread([r["score"] for r in runs], 1),
        "mae": _spread([r["mae"] for r in runs], 3),
        "runs": {str(seed): run for seed, run in summaries.items()},
    }


def train_subset(
    data_dir: Path,
    subset: str,
    config: TrainConfig | None = None,
    progress: Progress = _noop,
) -> SubsetResult:
    config = config or TrainConfig()
    progress(subset, "loading", 0.0)
    data = load_subset(data_dir, subset)
    started = time.perf_counter()
    model = fit_model(data.train, subset, config, progress)
    seconds = time.perf_counter() - started
    progress(subset, "evaluating", 0.96)
    metrics = evaluate(model, data)
    progress(subset, "done", 1.0)
    return SubsetResult(subset, model, metrics, seconds, data.train_sha256, config)


def register_result(result: SubsetResult, registry: Any) -> Any:
    """Register a trained subset model as ``rul-<subset>`` and promote it to current."""
    metrics = {**result.metrics, "train_seconds": round(result.train_seconds, 2)}
    params = {
        **asdict(result.config),
        "subset": result.subset,
        "sensors": result.model.pipeline.sensors,
        "n_regimes": result.model.pipeline.n_regimes,
        "n_features": len(result.model.pipeline.feature_names),
    }
    return registry.register(
        f"rul-{result.subset}",
        result.model,
        params=params,
        metrics=metrics,
        data_hash=result.data_hash,
        promote=True,
    )
