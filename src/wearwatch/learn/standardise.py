"""Online standardisation with Welford's algorithm, scaling with the statistics *before* a sample.

River's ``preprocessing.StandardScaler`` inside a pipeline learns first and then transforms
(``Pipeline.learn_one`` updates the scaler, and ``predict_one`` after that sees statistics that
already include the sample being predicted in a test-then-train loop only if learn ran first —
the order is easy to get wrong). This scaler makes the order explicit: :meth:`transform` never
changes state, :meth:`learn` adds a sample, :meth:`transform_then_learn` does both in that order.

>>> s = WelfordScaler()
>>> s.transform_then_learn({"a": 1.0})  # no statistics yet: centred on nothing, unit scale
{'a': 0.0}
>>> s.transform_then_learn({"a": 3.0})  # mean 1, n=1 -> no spread yet
{'a': 0.0}
>>> s.transform_then_learn({"a": 5.0})  # mean 2, population std 1 -> (5-2)/1
{'a': 3.0}
>>> s.n, s.mean["a"], round(s.std("a"), 6)
(3, 3.0, 1.632993)
"""

from __future__ import annotations

import math


class WelfordScaler:
    """Per-feature running mean and population variance (Welford); picklable, deterministic."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean: dict[str, float] = {}
        self.m2: dict[str, float] = {}

    def std(self, key: str) -> float:
        if self.n < 2:
            return 0.0
        return math.sqrt(self.m2[key] / self.n)

    def transform(self, x: dict[str, float]) -> dict[str, float]:
        """Standardise with the current statistics; features without spread map to 0."""
        n = self.n
        out: dict[str, float] = {}
        for key, value in x.items():
            if n < 2:
                out[key] = 0.0
                continue
            var = self.m2[key] / n
            out[key] = (value - self.mean[key]) / math.sqrt(var) if var > 1e-18 else 0.0
        return out

    def learn(self, x: dict[str, float]) -> None:
        self.n += 1
        n = self.n
        mean, m2 = self.mean, self.m2
        for key, value in x.items():
            old = mean.get(key, 0.0)
            new = old + (value - old) / n
            mean[key] = new
            m2[key] = m2.get(key, 0.0) + (value - old) * (value - new)

    def transform_then_learn(self, x: dict[str, float]) -> dict[str, float]:
        out = self.transform(x)
        self.learn(x)
        return out

    def __getstate__(self) -> tuple[int, dict[str, float], dict[str, float]]:
        return self.n, self.mean, self.m2

    def __setstate__(self, state: tuple[int, dict[str, float], dict[str, float]]) -> None:
        self.n, self.mean, self.m2 = state
