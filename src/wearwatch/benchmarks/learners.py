"""Learner benchmark on the drifting mill stream: accuracy per phase and test-then-train speed.

The stream is the twin's ``cycle`` scenario (new rolls → gradual wear → shock → roll change),
joined offline (no loss) into (product line, standardised physics features, relative
residual). Every learner sees the same stream, one instance per product line as in the
pipeline; the timed loop is exactly ``predict_one`` then ``learn_one`` per sample.
MOA's AMRulesRegressor runs through ``capymoa`` (needs a JRE) when available; its timing
includes building each MOA instance, which any Python caller has to pay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wearwatch.events import PassActual, PassRequest
from wearwatch.learn.online import DEFAULT_LEARNER, LEARNER_NAMES, make_learner
from wearwatch.learn.standardise import WelfordScaler
from wearwatch.pipelines.mill.pipeline import request_features
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

#: Phases of the ``cycle`` scenario that follow a drift.
AFTER_DRIFT = ("shock", "after_maintenance")

Row = tuple[str, dict[str, float], float, float, float, str]


def mill_stream(seed: int = 7, passes: int = 6000, scenario: str = "cycle") -> list[Row]:
    """(line, standardised features, residual, baseline kN, actual kN, phase) per pass."""
    twin = MillTwin(
        MillTwinConfig(seed=seed, scenario=scenario, planned_passes=passes, record_truth=True)
    )
    requests: dict[tuple[str, int], PassRequest] = {}
    scalers: dict[str, WelfordScaler] = {}
    rows: list[Row] = []
    for e in twin.events(max_passes=passes):
        if isinstance(e, PassRequest):
            requests[(e.slab_id, e.pass_no)] = e
        elif isinstance(e, PassActual):
            r = requests.pop((e.slab_id, e.pass_no))
            scaler = scalers.setdefault(r.line, WelfordScaler())
            x = scaler.transform_then_learn(request_features(r))
            base = r.baseline_force_kn
            y = (e.force_kn - base) / base
            phase = twin.truth[(e.slab_id, e.pass_no)].phase
            rows.append((r.line, x, y, base, e.force_kn, phase))
    return rows


def _score(rows: list[Row], preds: list[float], seconds: float) -> dict[str, Any]:
    by_phase: dict[str, list[tuple[float, float]]] = {}
    for (_line, _x, _y, base, actual, phase), r in zip(rows, preds, strict=True):
        err = abs(base * (1.0 + r) - actual)
        by_phase.setdefault(phase, []).append((err, err / actual * 100.0))

    def agg(items: list[tuple[float, float]]) -> dict[str, float]:
        n = len(items)
        return {
            "mae_kn": round(sum(a for a, _ in items) / n, 2),
            "ape": round(sum(b for _, b in items) / n, 4),
        }

    after = [item for p in AFTER_DRIFT for item in by_phase.get(p, [])]
    return {
        "updates_per_s": round(len(rows) / seconds, 1) if seconds > 0 else None,
        "phases": {p: agg(items) for p, items in by_phase.items()},
        "after_drift": agg(after) if after else None,
        "overall": agg([i for items in by_phase.values() for i in items]),
    }


def _run_python(name: str, rows: list[Row], seed: int) -> dict[str, Any]:
    models: dict[str, Any] = {}
    preds: list[float] = []
    append = preds.append
    t0 = time.perf_counter()
    for line, x, y, _b, _a, _p in rows:
        m = models.get(line)
        if m is None:
            m = models[line] = make_learner(name, seed)
        append(m.predict_one(x))
        m.learn_one(x, y)
    seconds = time.perf_counter() - t0
    out = _score(rows, preds, seconds)
    out["drifts"] = sum(int(getattr(m, "drifts", 0)) for m in models.values())
    return out


def _run_capymoa(rows: list[Row], seed: int) -> dict[str, Any]:
    try:
        from capymoa.base import MOARegressor
        from capymoa.core import RegressionInstance
        from capymoa.stream import Schema
        from moa.classifiers.rules import AMRulesRegressor  # type: ignore[import-not-found]
    except Exception as exc:  # missing package, missing JRE, JVM start failure
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}".strip()[:300]}
    import numpy as np

    names = sorted(rows[0][1]) if rows else []
    schema = Schema.from_custom([*names, "residual"], target="residual")
    make: Callable[[], Any] = lambda: MOARegressor(  # noqa: E731
        schema=schema, moa_learner=AMRulesRegressor(), random_seed=None
    )
    models: dict[str, Any] = {}
    preds: list[float] = []
    t0 = time.perf_counter()
    for line, x, y, _b, _a, _p in rows:
        m = models.get(line)
        if m is None:
            m = models[line] = make()
        inst = RegressionInstance.from_array(schema, np.array([x[k] for k in names]), y)
        preds.append(float(m.predict(inst)))
        m.train(inst)
    seconds = time.perf_counter() - t0
    out = _score(rows, preds, seconds)
    out["available"] = True
    out["learner"] = "moa.classifiers.rules.AMRulesRegressor (capymoa)"
    return out


def run_learner_benchmark(
    seed: int = 7,
    passes: int = 6000,
    learners: tuple[str, ...] = LEARNER_NAMES,
    include_capymoa: bool = True,
) -> dict[str, Any]:
    """Stream the drifting mill data through every learner; a JSON-ready report.

    Returns ``{"stream": {...}, "default": name, "learners": {name: {"updates_per_s",
    "phases": {phase: {"mae_kn", "ape"}}, "after_drift", "overall", "drifts"}},
    "capymoa": {...same, "available": True} | {"available": False, "reason": str},
    "default_vs_capymoa": {"speedup", "after_drift_ape_ratio"} | None}``.
    """
    rows = mill_stream(seed, passes)
    phases: dict[str, int] = {}
    for row in rows:
        phases[row[5]] = phases.get(row[5], 0) + 1
    report: dict[str, Any] = {
        "stream": {"scenario": "cycle", "seed": seed, "samples": len(rows), "phases": phases},
        "default": DEFAULT_LEARNER,
        "learners": {name: _run_python(name, rows, seed) for name in learners},
    }
    report["capymoa"] = (
        _run_capymoa(rows, seed)
        if include_capymoa
        else {"available": False, "reason": "not requested"}
    )
    cap = report["capymoa"]
    default = report["learners"].get(DEFAULT_LEARNER)
    if cap.get("available") and default:
        report["default_vs_capymoa"] = {
            "speedup": round(default["updates_per_s"] / cap["updates_per_s"], 2),
            "after_drift_ape_ratio": round(
                default["after_drift"]["ape"] / cap["after_drift"]["ape"], 4
            ),
        }
    else:
        report["default_vs_capymoa"] = None
    return report
