"""Scores of a failure-risk classifier on held-out windows.

PR-AUC is sklearn's average precision (the step-wise area, without the optimistic linear
interpolation); a classifier that knows nothing scores the prevalence, so read it beside that.

>>> m = classification_metrics([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
>>> m["accuracy"], m["precision"], m["recall"], m["roc_auc"], round(m["pr_auc"], 4)
(0.5, 0.5, 0.5, 0.75, 0.8333)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

#: The metrics reported per model, in order.
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def classification_metrics(
    probability: Sequence[float] | np.ndarray,
    positive: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (at ``threshold``), ROC-AUC and PR-AUC; the AUCs are
    NaN when the labels hold a single class (they are undefined)."""
    proba = np.asarray(probability, dtype=np.float64)
    y = np.asarray(positive).astype(bool)
    predicted = proba >= threshold
    both = bool(y.any() and not y.all())
    return {
        "accuracy": float(accuracy_score(y, predicted)) if y.size else float("nan"),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, proba)) if both else float("nan"),
    }
