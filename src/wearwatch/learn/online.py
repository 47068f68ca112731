"""Online regressors with one protocol: ``predict_one(x) -> float`` and ``learn_one(x, y)``.

All learners are deterministic (seeded) and picklable, so a pipeline holding them can be
checkpointed and restored mid-stream. Inputs are dicts of already standardised features
(see :class:`wearwatch.learn.standardise.WelfordScaler`).

* ``rls`` (the default): exponentially weighted recursive least squares on a few physics
  features, with a Page-Hinkley detector on its error that re-opens the covariance on drift.
  The mill residual is (nearly) linear in L/h_m with a slope set by friction, i.e. by wear, so
  a forgetting linear model tracks it quickly — and it is pure Python arithmetic, fast.
* ``amrules``: the reference, River's ``rules.AMRules`` with ``drift.PageHinkley``.
* ``mean``: target mean (River ``stats.Mean``), the floor any learner must beat.
* ``linear``: River ``linear_model.LinearRegression`` (SGD), an online linear baseline.
* ``arf``: River ``forest.ARFRegressor`` (adaptive random forest), a stronger, slower learner.
* ``hatr``: River ``tree.HoeffdingAdaptiveTreeRegressor``.

>>> m = make_learner("rls")
>>> for i in range(200):
...     x = {"lh": (i % 7) / 3.0}
...     m.learn_one(x, 0.02 + 0.05 * x["lh"])
>>> round(m.predict_one({"lh": 1.0}), 4)
0.07
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from river import drift, forest, linear_model, optim, rules, stats, tree

DEFAULT_LEARNER = "rls"
LEARNER_NAMES = ("rls", "amrules", "mean", "linear", "arf", "hatr")
#: Learners the mill pipeline runs side by side by default (arf/hatr: benchmark only; slow).
PIPELINE_LEARNERS = ("rls", "amrules", "mean", "linear")
#: Physics features the RLS uses (keys of ``wearwatch.physics.rolling.pass_features``).
RLS_FEATURES = ("lh", "flat")


@runtime_checkable
class Learner(Protocol):
    def predict_one(self, x: dict[str, float]) -> float: ...

    def learn_one(self, x: dict[str, float], y: float) -> None: ...


class RLSRegressor:
    """Exponentially weighted least squares (recursive, ridge-regularised) with drift reset.

    Keeps the forgetting-weighted normal equations ``A = Σ λ^k φφᵀ`` and ``b = Σ λ^k φ·y``
    (φ = [1, features]) and solves ``(A + ridge·I)·w = b`` by Cholesky after every update:
    the textbook RLS covariance recursion is cheaper by a few flops but loses symmetry and
    positive definiteness under forgetting; this form cannot. ``forgetting`` λ sets the memory
    (≈ 1/(1−λ) samples). A Page-Hinkley test on the prediction error (both directions)
    shrinks ``A`` and ``b`` by ``reset_keep`` on a detection, so the model re-adapts within a
    few samples after an abrupt change; ``drifts`` counts detections.
    """

    def __init__(
        self,
        features: tuple[str, ...] = RLS_FEATURES,
        forgetting: float = 0.96,
        ridge: float = 1e-3,
        reset_keep: float = 0.05,
        drift_threshold: float = 0.05,
        drift_tolerance: float = 0.005,
    ) -> None:
        if not 0.0 < forgetting <= 1.0:
            raise ValueError(f"forgetting={forgetting}: expected a value in (0, 1]")
        if not ridge > 0.0:
            raise ValueError(f"ridge={ridge}: expected a value > 0")
        self.features = tuple(features)
        self.lam = forgetting
        self.ridge = ridge
        self.reset_keep = reset_keep
        d = len(self.features) + 1
        self.d = d
        self.w = [0.0] * d
        self.A = [[0.0] * d for _ in range(d)]
        self.b = [0.0] * d
        # Page-Hinkley on the error, both directions, no fading (River restarts it after a
        # detection).
        self.detector = drift.PageHinkley(
            min_instances=10,
            delta=drift_tolerance,
            threshold=drift_threshold,
            alpha=1.0,
            mode="both",
        )
        self.drifts = 0
        self.n = 0

    def _phi(self, x: dict[str, float]) -> list[float]:
        get = x.get
        return [1.0, *[get(f, 0.0) for f in self.features]]

    def predict_one(self, x: dict[str, float]) -> float:
        if self.d == 3:
            f1, f2 = self.features
            w0, w1, w2 = self.w
            return w0 + w1 * x.get(f1, 0.0) + w2 * x.get(f2, 0.0)
        phi = self._phi(x)
        return sum(w * p for w, p in zip(self.w, phi, strict=True))

    def learn_one(self, x: dict[str, float], y: float) -> None:
        if self.d == 3:
            self._learn3(x, y)
            return
        phi = self._phi(x)
        err = y - sum(wi * pi for wi, pi in zip(self.w, phi, strict=True))
        lam = self.lam
        if self._page_hinkley(err):
            self.drifts += 1
            lam *= self.reset_keep
        self.A = A = [
            [lam * a + pi * pj for a, pj in zip(row, phi, strict=True)]
            for row, pi in zip(self.A, phi, strict=True)
        ]
        self.b = b = [lam * bi + pi * y for bi, pi in zip(self.b, phi, strict=True)]
        self.n += 1
        self.w = _ridge_solve(A, b, self.ridge)

    def _learn3(self, x: dict[str, float], y: float) -> None:
        """The same update unrolled for one intercept and two features (the default)."""
        f1, f2 = self.features
        p1 = x.get(f1, 0.0)
        p2 = x.get(f2, 0.0)
        w0, w1, w2 = self.w
        err = y - (w0 + w1 * p1 + w2 * p2)
        lam = self.lam
        if self._page_hinkley(err):
            self.drifts += 1
            lam *= self.reset_keep
        (a00, a01, a02), (_, a11, a12), (_, _, a22) = self.A
        a00 = lam * a00 + 1.0
        a01 = lam * a01 + p1
        a02 = lam * a02 + p2
        a11 = lam * a11 + p1 * p1
        a12 = lam * a12 + p1 * p2
        a22 = lam * a22 + p2 * p2
        self.A = [[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]]
        b0, b1, b2 = self.b
        b0 = lam * b0 + y
        b1 = lam * b1 + p1 * y
        b2 = lam * b2 + p2 * y
        self.b = [b0, b1, b2]
        self.n += 1
        r = self.ridge
        # Cholesky of A + r·I.
        l00 = math.sqrt(a00 + r)
        l10 = a01 / l00
        l20 = a02 / l00
        t = a11 + r - l10 * l10
        l11 = math.sqrt(t) if t > r else math.sqrt(r)
        l21 = (a12 - l20 * l10) / l11
        t = a22 + r - l20 * l20 - l21 * l21
        l22 = math.sqrt(t) if t > r else math.sqrt(r)
        z0 = b0 / l00
        z1 = (b1 - l10 * z0) / l11
        z2 = (b2 - l20 * z0 - l21 * z1) / l22
        w2 = z2 / l22
        w1 = (z1 - l21 * w2) / l11
        w0 = (z0 - l10 * w1 - l20 * w2) / l00
        self.w = [w0, w1, w2]

    def _page_hinkley(self, err: float) -> bool:
        """River's two-sided Page-Hinkley on the error; True on a detection."""
        self.detector.update(err)
        return self.detector.drift_detected


def _ridge_solve(A: list[list[float]], b: list[float], ridge: float) -> list[float]:
    """Solve (A + ridge·I)·w = b for a small symmetric PSD ``A`` (Cholesky, pure Python)."""
    d = len(b)
    L = [[0.0] * d for _ in range(d)]
    for i in range(d):
        Li = L[i]
        for j in range(i + 1):
            Lj = L[j]
            acc = A[i][j] - sum(Li[k] * Lj[k] for k in range(j))
            if i == j:
                Li[i] = math.sqrt(acc + ridge) if acc + ridge > 0.0 else math.sqrt(ridge)
            else:
                Li[j] = acc / Lj[j]
    z = [0.0] * d
    for i in range(d):
        z[i] = (b[i] - sum(L[i][k] * z[k] for k in range(i))) / L[i][i]
    w = [0.0] * d
    for i in range(d - 1, -1, -1):
        w[i] = (z[i] - sum(L[k][i] * w[k] for k in range(i + 1, d))) / L[i][i]
    return w


class RiverRegressor:
    """A River regressor behind the uniform protocol (predictions are finite floats)."""

    def __init__(self, model: object) -> None:
        self.model = model

    def predict_one(self, x: dict[str, float]) -> float:
        y = self.model.predict_one(x)  # type: ignore[attr-defined]
        y = float(y) if y is not None else 0.0
        return y if math.isfinite(y) else 0.0

    def learn_one(self, x: dict[str, float], y: float) -> None:
        self.model.learn_one(x, y)  # type: ignore[attr-defined]

    @property
    def drifts(self) -> int:
        n = getattr(self.model, "n_drifts_detected", 0)
        return int(n() if callable(n) else n)


class TargetMean:
    """Predicts the running mean of the target (River ``stats.Mean``)."""

    def __init__(self) -> None:
        self.mean = stats.Mean()
        self.drifts = 0

    def predict_one(self, x: dict[str, float]) -> float:
        return float(self.mean.get())

    def learn_one(self, x: dict[str, float], y: float) -> None:
        self.mean.update(y)


def make_learner(name: str, seed: int = 7) -> Learner:
    """A fresh learner by name (see :data:`LEARNER_NAMES`)."""
    if name == "rls":
        return RLSRegressor()
    if name == "amrules":
        return RiverRegressor(rules.AMRules(drift_detector=drift.PageHinkley()))
    if name == "mean":
        return TargetMean()
    if name == "linear":
        return RiverRegressor(
            linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01)
        )
    if name == "arf":
        return RiverRegressor(forest.ARFRegressor(n_models=5, seed=seed))
    if name == "hatr":
        return RiverRegressor(tree.HoeffdingAdaptiveTreeRegressor(seed=seed))
    raise ValueError(f"learner={name!r}: expected one of {', '.join(LEARNER_NAMES)}")
