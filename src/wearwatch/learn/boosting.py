"""LightGBM parameters shared by the batch trainers (RUL, failure risk).

Every trainer wants the same guarantees: deterministic (same data and seed, same booster,
bit for bit), row-wise histograms (no timing-dependent choice between layouts) and silent.
"""

from __future__ import annotations

from typing import Any, Protocol


class BoostingConfig(Protocol):
    """The fields a trainer's config carries for LightGBM."""

    seed: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    subsample: float
    colsample_bytree: float
    reg_lambda: float
    n_jobs: int


def lgbm_params(config: BoostingConfig, n_estimators: int) -> dict[str, Any]:
    """Keyword arguments for ``lightgbm.LGBMRegressor`` / ``LGBMClassifier``."""
    return {
        "n_estimators": n_estimators,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "subsample": config.subsample,
        "subsample_freq": 1,
        "colsample_bytree": config.colsample_bytree,
        "reg_lambda": config.reg_lambda,
        "random_state": config.seed,
        "n_jobs": config.n_jobs,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
