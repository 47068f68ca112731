"""RUL and failure-horizon metrics, including the PHM08 challenge's asymmetric score.

>>> round(phm08_score([0.0], [13.0]), 6) == round(float(np.e - 1), 6)  # 13 cycles early
True
>>> round(phm08_score([10.0], [0.0]), 6) == round(float(np.e - 1), 6)  # 10 cycles late
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

ArrayLike = Sequence[float] | np.ndarray


def phm08_score(pred: ArrayLike, true: ArrayLike) -> float:
    """Σ exp(−d/13)−1 for d < 0 (early), exp(d/10)−1 for d ≥ 0 (late), with d = pred − true."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    if d.size == 0:
        return 0.0
    per = np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)
    return float(per.sum())


def rmse(pred: ArrayLike, true: ArrayLike) -> float:
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(math.sqrt(np.mean(d * d))) if d.size else 0.0


def mae(pred: ArrayLike, true: ArrayLike) -> float:
    d = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(d))) if d.size else 0.0


def horizon_metrics(
    probability: ArrayLike, positive: ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall, F1 (at ``threshold``) and ROC-AUC of P(RUL ≤ horizon)."""
    proba = np.asarray(probability, dtype=np.float64)
    y = np.asarray(positive).astype(bool)
    pred = proba >= threshold
    out = {
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float("nan"),
    }
    if y.any() and not y.all():
        out["roc_auc"] = float(roc_auc_score(y, proba))
    return out
