"""PCA T² + Q (SPE): the classic multivariate detector, fitted in batch on healthy windows.

Inputs are features already standardised by each machine's own baseline, so machines of one
sensor set share one model. PCA keeps the fewest components explaining ``variance`` of the
healthy spread; Hotelling's T² measures how far a window lies *inside* that subspace
(Σ tᵢ² / λᵢ) and Q, the squared prediction error, how far *off* it (‖x − x̂‖²): a broken
correlation between sensors shows in Q even when every sensor is within its own range.
Thresholds are a high quantile of the healthy statistics times a margin. Everything is stored
as JSON arrays (no pickles).

>>> rng = np.random.default_rng(0)
>>> t = rng.normal(size=(2000, 1))
>>> z = np.hstack([t, t + 0.1 * rng.normal(size=(2000, 1)), rng.normal(size=(2000, 1))])
>>> det = PcaDetector.fit(("a", "b", "c"), z, variance=0.9, quantile=0.999, margin=1.0)
>>> det.components.shape[0]   # the shared factor of a and b, and c
2
>>> t2, q = det.statistics(np.array([2.0, -2.0, 0.0]))   # a and b disagree: off the subspace
>>> bool(q > det.q_threshold), bool(t2 < det.t2_threshold)
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA


@dataclass(frozen=True)
class PcaDetector:
    """A fitted T² + Q model over standardised ``features`` (a sensor set's inputs)."""

    features: tuple[str, ...]
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), orthonormal rows
    variances: np.ndarray  # (k,), the components' healthy variances (λ)
    t2_threshold: float
    #: ``inf`` when the components keep every dimension (Q is then identically 0).
    q_threshold: float
    rows: int

    @classmethod
    def fit(
        cls,
        features: tuple[str, ...],
        z: np.ndarray,
        *,
        variance: float = 0.95,
        quantile: float = 0.999,
        margin: float = 1.5,
    ) -> PcaDetector:
        """Fit on complete healthy rows ``z`` (n × d)."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(features) or z.shape[0] < 2:
            raise ValueError(f"PCA: need an n × {len(features)} matrix, n ≥ 2, got {z.shape}")
        pca = PCA(svd_solver="full").fit(z)
        ratios = np.cumsum(pca.explained_variance_ratio_)
        k = int(min(np.searchsorted(ratios, variance - 1e-12) + 1, z.shape[1]))
        # C-contiguous copies: the arrays a model loaded from JSON has, so both multiply in the
        # same order and score bit for bit alike
        mean = np.ascontiguousarray(pca.mean_, dtype=np.float64)
        components = np.ascontiguousarray(pca.components_[:k], dtype=np.float64)
        variances = np.ascontiguousarray(np.maximum(pca.explained_variance_[:k], 1e-12))
        det = cls(features, mean, components, variances, np.inf, np.inf, z.shape[0])
        t2, q = det.statistics(z)
        t2_threshold = float(np.quantile(t2, quantile) * margin)
        q_threshold = float(np.quantile(q, quantile) * margin) if k < z.shape[1] else np.inf
        return cls(
            features,
            mean,
            components,
            variances,
            max(t2_threshold, 1e-12),
            max(q_threshold, 1e-12),
            z.shape[0],
        )

    def statistics(self, z: np.ndarray) -> tuple[Any, Any]:
        """(T², Q) of one row (floats) or of each row of a matrix (arrays)."""
        centred = np.asarray(z, dtype=np.float64) - self.mean
        if centred.ndim == 1:
            return self.statistics_centred(centred)
        scores = centred @ self.components.T
        t2 = (scores**2 / self.variances).sum(axis=-1)
        residual = centred - scores @ self.components
        q = (residual**2).sum(axis=-1)
        return t2, q

    def statistics_centred(self, centred: np.ndarray) -> tuple[float, float]:
        """(T², Q) of one row already centred on the healthy mean: the stream's hot path,
        four dot products (Q = ‖x‖² − ‖scores‖², the components being orthonormal)."""
        scores = self.components @ centred
        t2 = float((scores * scores) @ (1.0 / self.variances))
        return t2, max(float(centred @ centred - scores @ scores), 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "variances": self.variances.tolist(),
            "t2_threshold": self.t2_threshold,
            "q_threshold": None if not np.isfinite(self.q_threshold) else self.q_threshold,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PcaDetector:
        q = data["q_threshold"]
        return cls(
            features=tuple(str(f) for f in data["features"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            components=np.asarray(data["components"], dtype=np.float64).reshape(
                -1, len(data["features"])
            ),
            variances=np.asarray(data["variances"], dtype=np.float64),
            t2_threshold=float(data["t2_threshold"]),
            q_threshold=np.inf if q is None else float(q),
            rows=int(data["rows"]),
        )
