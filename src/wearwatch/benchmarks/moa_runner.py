"""MOA's AMRulesRegressor, test-then-train per product line, in its own interpreter.

capymoa pins pandas 2.2 and needs a JRE, so it lives in a separate virtualenv (``make moa``
creates ``.venv-moa``) and this script runs there by path: it imports only numpy and capymoa
(never wearwatch). The protocol with :mod:`wearwatch.benchmarks.learners`:

``python moa_runner.py STREAM.npz RESULT.npz [--config NAME=CLI]...``

* STREAM.npz: ``X`` (n × d float64, standardised features), ``y`` (n, the residual),
  ``line`` (n, int: the product line; one model per line and config), ``names`` (d, str).
* RESULT.npz: ``pred_NAME`` (n, float64: each sample's prediction before it was learned) per
  config, and ``report``: a JSON string ``{"capymoa": version, "java": version, "configs":
  {NAME: {"options", "seconds", "updates_per_s", "rules", "drifts"}}}``. The timed loop is
  building the instance, ``predict``, ``train`` (and each line's model when first seen), as
  for the Python learners; ``rules`` / ``drifts`` are MOA's own measurements ("rules
  (number)", "change detections") summed over the lines.
* ``--config NAME=CLI``: MOA option string for one run (empty: MOA's defaults); default one
  config, ``default=``.

Exit status 0 on success; otherwise one line on stderr saying what failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stream")
    p.add_argument("result")
    p.add_argument("--config", action="append", default=[], metavar="NAME=CLI")
    return p.parse_args(argv)


def _configs(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ["default="]:
        name, sep, cli = item.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"error: --config {item!r}: expected NAME=CLI (NAME an identifier)")
        out[name] = cli
    return out


def run(X: np.ndarray, y: np.ndarray, line: np.ndarray, names: list[str], cli: str) -> dict:
    """One config over the stream: predictions and the timed figures."""
    from capymoa.base import MOARegressor
    from capymoa.core import RegressionInstance
    from capymoa.stream import Schema
    from moa.classifiers.rules import AMRulesRegressor  # type: ignore[import-not-found]

    schema = Schema.from_custom([*names, "residual"], target="residual")
    models: dict[int, Any] = {}
    preds = np.empty(len(y))
    from_array = RegressionInstance.from_array
    t0 = time.perf_counter()
    for i in range(len(y)):
        key = int(line[i])
        m = models.get(key)
        if m is None:
            # random_seed=None: MOA's AMRules is deterministic, and its multi-label core
            # rejects setRandomSeed before training.
            m = models[key] = MOARegressor(
                schema=schema, moa_learner=AMRulesRegressor(), CLI=cli or None, random_seed=None
            )
        inst = from_array(schema, X[i], float(y[i]))
        preds[i] = float(m.predict(inst))
        m.train(inst)
    seconds = time.perf_counter() - t0
    measured = {"rules (number)": 0.0, "change detections": 0.0}
    for m in models.values():
        for meas in m.moa_learner.getModelMeasurements():
            name = str(meas.getName())
            if name in measured:
                measured[name] += float(meas.getValue())
    return {
        "pred": preds,
        "options": cli,
        "seconds": seconds,
        "updates_per_s": len(y) / seconds if seconds > 0 else None,
        "rules": int(measured["rules (number)"]),
        "drifts": int(measured["change detections"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    configs = _configs(args.config)
    with np.load(args.stream, allow_pickle=False) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"], dtype=np.float64)
        line = np.asarray(data["line"])
        names = [str(n) for n in data["names"]]
    if X.ndim != 2 or X.shape != (len(y), len(names)) or line.shape != y.shape:
        print(f"error: {args.stream}: X, y, line, names do not match", file=sys.stderr)
        return 2
    try:
        import capymoa
        from jpype import java  # type: ignore[import-not-found]

        results = {name: run(X, y, line, names, cli) for name, cli in configs.items()}
        java_version = str(java.lang.System.getProperty("java.version"))
    except Exception as exc:  # missing package, JVM start failure, bad MOA options
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300], file=sys.stderr)
        return 1
    report = {
        "capymoa": capymoa.__version__,
        "java": java_version,
        "configs": {
            name: {k: v for k, v in r.items() if k != "pred"} for name, r in results.items()
        },
    }
    arrays = {f"pred_{name}": r["pred"] for name, r in results.items()}
    np.savez(args.result, report=np.array(json.dumps(report)), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
