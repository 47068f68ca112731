"""The online detector: River's Half-Space Trees per machine, behind a quantile filter.

Half-Space Trees split the unit cube at random, so their inputs must lie in [0, 1]. The
scaling here is fixed and deterministic, taken from the machine's healthy baseline: each input
maps linearly from [p01 − m·r, p99 + m·r] to [0, 1] (r = p99 − p01, ``m`` the margin), then
clips — healthy values fill the middle, a deviation of up to m·r beyond the healthy range
stays visible. A running-min/max scaler would instead stretch to whatever a fault reaches.

Raw HST scores drift with the trees' masses, so a window is anomalous when its score reaches
a running quantile of the machine's own scores (River's ``QuantileFilter``); anomalous windows
are not learned (``protect_anomaly_detector``), so a failing machine does not teach the trees
that failing is normal. :meth:`OnlineDetector.score` reads; only :meth:`OnlineDetector.learn`
(the stream's update) changes the trees and the quantile.

>>> scaling = HstScaling(("t.mean",), (50.0,), (70.0,), (60.0,))
>>> scaling.transform({"t.mean": 60.0}), scaling.transform({"t.mean": 200.0})
({'t.mean': 0.5}, {'t.mean': 1.0})
>>> det = OnlineDetector(scaling, trees=3, height=3, window=10, quantile=0.9, seed=1)
>>> det.score({"t.mean": 60.0})     # no window learned yet: no opinion
(0.0, None)
>>> for i in range(40):
...     det.learn({"t.mean": 58.0 + (i % 5)})
>>> s, threshold = det.score({"t.mean": 60.0})
>>> 0.0 <= s <= 1.0 and threshold is not None
True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import anomaly
from river.tree.padded import make_padded_tree


@dataclass(frozen=True)
class HstScaling:
    """Fixed linear maps of the detector's inputs into [0, 1]."""

    inputs: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    #: Each input's healthy mean (imputed for a sensor known to be at fault).
    typical: tuple[float, ...]

    @classmethod
    def from_percentiles(
        cls, inputs: Mapping[str, tuple[float, float, float]], margin: float
    ) -> HstScaling:
        """From input → (p01, p99, mean) of the healthy baseline."""
        names = tuple(sorted(inputs))
        low, high, typical = [], [], []
        for name in names:
            p01, p99, mean = inputs[name]
            r = max(p99 - p01, 1e-9 * max(abs(p99), 1.0), 1e-12)
            low.append(p01 - margin * r)
            high.append(p99 + margin * r)
            typical.append(mean)
        return cls(names, tuple(low), tuple(high), tuple(typical))

    def transform(
        self, features: Mapping[str, float], faulty: Collection[str] = ()
    ) -> dict[str, float]:
        """Scaled inputs; a missing input or one of a ``faulty`` sensor takes its typical
        value (the detector then judges the rest of the machine)."""
        out = {}
        for name, low, high, typical in zip(
            self.inputs, self.low, self.high, self.typical, strict=True
        ):
            value = features.get(name)
            if value is None or name.partition(".")[0] in faulty:
                value = typical
            scaled = (value - low) / (high - low)
            out[name] = 0.0 if scaled < 0.0 else 1.0 if scaled > 1.0 else scaled
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "low": list(self.low),
            "high": list(self.high),
            "typical": list(self.typical),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HstScaling:
        return cls(
            tuple(str(x) for x in data["inputs"]),
            tuple(float(x) for x in data["low"]),
            tuple(float(x) for x in data["high"]),
            tuple(float(x) for x in data["typical"]),
        )


class OnlineDetector:
    """One machine's Half-Space Trees (one window size) and its quantile filter."""

    def __init__(
        self,
        scaling: HstScaling,
        *,
        trees: int,
        height: int,
        window: int,
        quantile: float,
        seed: int,
    ) -> None:
        self.scaling = scaling
        self.filter = anomaly.QuantileFilter(
            anomaly.HalfSpaceTrees(n_trees=trees, height=height, window_size=window, seed=seed),
            q=quantile,
            protect_anomaly_detector=True,
        )
        #: Scores the quantile has seen; it judges only after a full window of them.
        self.scored = 0
        self.window = window
        self._params = {"trees": trees, "height": height, "window": window, "seed": seed}

    # A detector lives in every checkpoint of its partition. Pickled as River's node objects
    # it costs ~1 ms and 15 kB a machine, which made checkpoints the fleet pipeline's largest
    # latency; the trees' shape follows from the seed and the inputs, so only the masses
    # (two integer arrays), the counters and the quantile are stored, and the trees are
    # regrown from the seed on restore — the same trees, bit for bit.

    def __getstate__(self) -> dict[str, Any]:
        hst = self.filter.anomaly_detector
        nodes = [n for tree in hst._tree_nodes for n in tree]
        masses = np.array([(n.l_mass, n.r_mass) for n in nodes], dtype=np.int64)
        return {
            "scaling": self.scaling,
            "params": self._params,
            "quantile_q": self.filter.quantile.q,
            "protect": self.filter.protect_anomaly_detector,
            "quantile": self.filter.quantile,
            "scored": self.scored,
            "counter": hst.counter,
            "first_window": hst._first_window,
            "grown": bool(hst.trees),
            "masses": masses.tobytes(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        p = state["params"]
        self.__init__(  # type: ignore[misc]
            state["scaling"],
            trees=p["trees"],
            height=p["height"],
            window=p["window"],
            quantile=state["quantile_q"],
            seed=p["seed"],
        )
        self.filter.protect_anomaly_detector = state["protect"]
        self.filter.quantile = state["quantile"]
        self.scored = state["scored"]
        hst = self.filter.anomaly_detector
        hst.counter = state["counter"]
        hst._first_window = state["first_window"]
        if state["grown"]:
            # As River grows them on the first learned window: sorted inputs, the seeded rng.
            hst.trees = [
                make_padded_tree(
                    limits={i: hst.limits[i] for i in sorted(self.scaling.inputs)},
                    height=hst.height,
                    padding=0.15,
                    rng=hst.rng,
                    r_mass=0,
                    l_mass=0,
                )
                for _ in range(hst.n_trees)
            ]
            hst._tree_nodes = [list(t.iter_dfs()) for t in hst.trees]
            masses = np.frombuffer(state["masses"], dtype=np.int64).reshape(-1, 2).tolist()
            nodes = [n for tree in hst._tree_nodes for n in tree]
            if len(nodes) != len(masses):
                raise ValueError(
                    f"online detector: {len(masses)} stored node masses for {len(nodes)} nodes"
                )
            for node, (left, right) in zip(nodes, masses, strict=True):
                node.l_mass, node.r_mass = left, right

    def score(self, x: Mapping[str, float]) -> tuple[float, float | None]:
        """(HST score in [0, 1], the anomaly threshold; ``None`` while still warming up)."""
        if self.filter.anomaly_detector._first_window:
            return 0.0, None  # River scores 0 until one window of masses is complete
        score = float(self.filter.score_one(x))
        return score, self.filter.quantile.get() if self.scored >= self.window else None

    def learn(self, x: Mapping[str, float]) -> None:
        """Learn a window unless the filter deems it anomalous; update the quantile.

        The first window only fills the trees' masses: its scores are all 0 and would pin the
        quantile at 0, which would deem every later window anomalous and never learn again.
        """
        hst = self.filter.anomaly_detector
        if hst._first_window:
            hst.learn_one(dict(x))
            return
        self.filter.learn_one(dict(x))
        self.scored += 1

    def snapshot(self) -> dict[str, Any]:
        """The learned state as JSON values (tree masses, window counter, quantile)."""
        hst = self.filter.anomaly_detector
        return {
            "counter": hst.counter,
            "scored": self.scored,
            "first_window": hst._first_window,
            "masses": [[(n.l_mass, n.r_mass) for n in nodes] for nodes in hst._tree_nodes],
            "quantile": self.filter.quantile.get(),
        }
