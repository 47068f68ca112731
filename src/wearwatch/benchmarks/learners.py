"""Learner benchmark on the drifting mill stream: accuracy per phase and test-then-train speed.

The stream is the twin's ``cycle`` scenario (new rolls → gradual wear → shock → roll change),
joined offline (no loss) into (product line, standardised physics features, relative
residual). Every learner sees the same stream, one instance per product line as in the
pipeline; the timed loop is exactly ``predict_one`` then ``learn_one`` per sample.
MOA's AMRulesRegressor runs through ``capymoa`` (needs a JRE) in its own interpreter
(:mod:`~wearwatch.benchmarks.moa_runner`; capymoa's pins clash with ours), with MOA's defaults
and with the same fair configuration as River's ``amrules``; its timing includes building each
MOA instance, which any Python caller has to pay.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wearwatch.events import PassActual, PassRequest
from wearwatch.learn.online import (
    AMRULES_DELTA,
    AMRULES_DRIFT_THRESHOLD,
    AMRULES_DRIFT_TOLERANCE,
    AMRULES_N_MIN,
    DEFAULT_LEARNER,
    LEARNER_NAMES,
    make_learner,
)
from wearwatch.learn.standardise import WelfordScaler
from wearwatch.pipelines.mill.pipeline import request_features
from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig

#: Phases of the ``cycle`` scenario that follow a drift.
AFTER_DRIFT = ("shock", "after_maintenance")

Row = tuple[str, dict[str, float], float, float, float, str]


def mill_stream(
    seed: int = 7, passes: int = 6000, scenario: str = "cycle", *, ideal: bool = False
) -> list[Row]:
    """(line, standardised features, residual, baseline kN, actual kN, phase) per pass."""
    twin = MillTwin(
        MillTwinConfig(
            seed=seed,
            scenario=scenario,
            planned_passes=passes,
            record_truth=True,
            ideal=ideal,
        )
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
    grown = [getattr(m, "rules", None) for m in models.values()]
    if any(r is not None for r in grown):
        out["rules"] = sum(r or 0 for r in grown)
    return out


#: MOA's AMRulesRegressor runs: its defaults, and the fair configuration of River's AMRules
#: in MOA's options (grace period, split confidence, Page-Hinkley on the absolute error with
#: tolerance ``-d`` and threshold ``-l`` in residual units).
MOA_CONFIGS = {
    "moa_amrules_default": "",
    "moa_amrules": (
        f"-g {AMRULES_N_MIN} -c {AMRULES_DELTA} "
        f"-H (PageHinkleyDM -d {AMRULES_DRIFT_TOLERANCE} -l {AMRULES_DRIFT_THRESHOLD})"
    ),
}
MOA_RUNNER = Path(__file__).with_name("moa_runner.py")


def run_moa(
    rows: list[Row], python: Path, timeout_s: float = 1800.0
) -> dict[str, dict[str, Any]] | dict[str, Any]:
    """MOA's AMRulesRegressor (every :data:`MOA_CONFIGS` entry) on the stream, through
    :mod:`~wearwatch.benchmarks.moa_runner` run by ``python`` (an interpreter with capymoa).

    Returns ``{config: {scores..., "rules", "drifts", "options", "capymoa", "java"}}``, or
    ``{"available": False, "reason": str}`` when the interpreter, capymoa or the JRE fails.
    """
    names = sorted(rows[0][1]) if rows else []
    codes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="wearwatch-moa-") as tmp:
        stream = Path(tmp) / "stream.npz"
        result = Path(tmp) / "result.npz"
        np.savez(
            stream,
            X=np.array([[x[k] for k in names] for _l, x, *_ in rows], dtype=np.float64),
            y=np.array([r[2] for r in rows], dtype=np.float64),
            line=np.array([codes.setdefault(r[0], len(codes)) for r in rows], dtype=np.int64),
            names=np.array(names),
        )
        configs = [f"--config={name}={cli}" for name, cli in MOA_CONFIGS.items()]
        try:
            done = subprocess.run(
                [str(python), str(MOA_RUNNER), str(stream), str(result), *configs],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"available": False, "reason": f"{python}: {exc}"[:300]}
        if done.returncode != 0 or not result.is_file():
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {done.returncode}"
            return {"available": False, "reason": f"{python} moa_runner.py: {why}"[:300]}
        with np.load(result, allow_pickle=False) as data:
            report = json.loads(str(data["report"]))
            preds = {name: data[f"pred_{name}"].tolist() for name in MOA_CONFIGS}
    out: dict[str, dict[str, Any]] = {}
    for name, meta in report["configs"].items():
        row = _score(rows, preds[name], meta["seconds"])
        row.update(
            drifts=meta["drifts"],
            rules=meta["rules"],
            options=meta["options"],
            learner=f"moa.classifiers.rules.AMRulesRegressor (capymoa {report['capymoa']}, "
            f"Java {report['java']})",
        )
        out[name] = row
    return out


def run_learner_benchmark(
    seed: int = 7,
    passes: int = 6000,
    learners: tuple[str, ...] = LEARNER_NAMES,
    moa_python: Path | None = None,
    ideal: bool = False,
) -> dict[str, Any]:
    """Stream the drifting mill data through every learner; a JSON-ready report.

    ``moa_python``: an interpreter with capymoa (and a JRE) to run MOA's AMRulesRegressor in;
    None leaves MOA out. ``ideal``: the twin without the plant effects the physics does not
    model (:class:`MillTwinConfig` ``ideal=True``). Returns ``{"stream": {...}, "default":
    name, "learners": {name: {"updates_per_s", "phases": {phase: {"mae_kn", "ape"}},
    "after_drift", "overall", "drifts"[, "rules"]}}, "moa": {"available": True} |
    {"available": False, "reason": str}, "winner": name, "default_vs_moa": {...} | None}``;
    MOA's runs appear under ``learners`` as ``moa_amrules`` / ``moa_amrules_default``, and
    ``winner`` is the learner (MOA's included) with the lowest after-drift APE. Everything
    but ``updates_per_s`` (and ``default_vs_moa.speedup``) is deterministic.
    """
    rows = mill_stream(seed, passes, ideal=ideal)
    phases: dict[str, int] = {}
    for row in rows:
        phases[row[5]] = phases.get(row[5], 0) + 1
    report: dict[str, Any] = {
        "stream": {
            "scenario": "cycle",
            "twin": "ideal" if ideal else "realistic",
            "seed": seed,
            "samples": len(rows),
            "phases": phases,
        },
        "default": DEFAULT_LEARNER,
        "learners": {name: _run_python(name, rows, seed) for name in learners},
    }
    if moa_python is None:
        report["moa"] = {
            "available": False,
            "reason": "no interpreter with capymoa given (--moa-python)",
        }
    else:
        moa = run_moa(rows, moa_python)
        if moa.get("available") is False:
            report["moa"] = moa
        else:
            report["moa"] = {"available": True}
            report["learners"].update(moa)
    scored = {n: r for n, r in report["learners"].items() if r.get("after_drift")}
    report["winner"] = (
        min(scored, key=lambda n: (scored[n]["after_drift"]["ape"], n)) if scored else None
    )
    default = report["learners"].get(DEFAULT_LEARNER)
    moa_ref = report["learners"].get("moa_amrules_default")
    if default and moa_ref and default.get("after_drift") and moa_ref.get("after_drift"):
        report["default_vs_moa"] = {
            "speedup": round(default["updates_per_s"] / moa_ref["updates_per_s"], 2),
            "after_drift_ape_ratio": round(
                default["after_drift"]["ape"] / moa_ref["after_drift"]["ape"], 4
            ),
        }
    else:
        report["default_vs_moa"] = None
    return report
