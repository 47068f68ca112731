"""``wearwatch train``: train models and register them.

``wearwatch train cmapss --subset FD001|FD002|FD003|FD004|all [--data DIR] [--json]`` trains
the RUL regressor and the 30-cycle failure-horizon classifier on NASA C-MAPSS, scores them on
the official test set, registers each model as ``rul-<subset>`` and promotes it to current.
``--features window --window 30`` uses each engine's trailing 30 cycles only (comparable with
window-based papers) instead of its whole history; ``--seeds 1-5`` trains once per seed and
reports mean ± std (registering the first seed's model); ``--cv 5`` runs 5-fold GroupKFold by
engine on the training set instead (nothing is registered, the test set is not read).

``wearwatch train anomaly --features DIR [--limits FILE] [--maintenance FILE] [--registry DIR]``
fits the fleet's anomaly detectors on the feature store's healthy windows and registers them
as ``anomaly`` (current).

``wearwatch train risk --features DIR (--maintenance FILE | --bus URL) [--horizon 24h]``
labels the feature store's windows from real failures, trains the logistic baseline and
LightGBM, scores both on held-out machines and time, registers family ``risk`` (current).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wearwatch.cli.errors import fail
from wearwatch.cli.seeds import seed_option
from wearwatch.store.registry import finite_json

#: The longest window ``--features window`` accepts (the longest C-MAPSS engine: 543 cycles).
MAX_WINDOW = 600

app = typer.Typer(help="Train models and register them.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Train models and register them in the model registry."""


def _subsets(value: str) -> list[str]:
    from wearwatch.learn.rul.data import SUBSETS

    wanted = value.strip().upper()
    if wanted == "ALL":
        return list(SUBSETS)
    if wanted not in SUBSETS:
        fail(f"unknown subset {value!r}: choose one of {', '.join(SUBSETS)} or all")
    return [wanted]


def _pm(spread: dict[str, float], digits: int) -> str:
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f}"


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _comparison_table(results: dict[str, dict[str, Any]], subsets: list[str], label: str) -> Table:
    from wearwatch.learn.rul.published import PUBLISHED

    table = Table(title="C-MAPSS test sets: RMSE / PHM08 score (lower is better)")
    table.add_column("method")
    for subset in subsets:
        table.add_column(subset, justify="right")
    table.add_column("source")
    for row in PUBLISHED:
        cells = []
        for subset in subsets:
            rmse, score = row.results.get(subset, (None, None))
            cells.append(f"{_fmt(rmse, 2)} / {_fmt(score, 0)}")
        table.add_row(row.method, *cells, row.source)

    def cell(r: dict[str, Any]) -> str:
        if isinstance(r["rmse"], dict):  # mean ± std over seeds
            return f"{_pm(r['rmse'], 2)} / {_pm(r['score'], 0)}"
        return f"{r['rmse']:.2f} / {r['score']:.0f}"

    ours = [cell(results[s]) if s in results else "–" for s in subsets]
    table.add_row(f"[bold]wearwatch LightGBM, {label}[/bold]", *ours, "measured", style="green")
    table.caption = (
        "Published rows: shared/data/cmapss/PUBLISHED_RESULTS.md (mostly secondary sources). "
        "Ours: RUL cap 125 for training and scoring."
    )
    return table


def _detail_table(results: dict[str, dict[str, Any]], versions: dict[str, str]) -> Table:
    table = Table(title="wearwatch on the official test sets (one prediction per engine)")
    for name in ("subset", "RMSE", "score", "MAE", "P(≤30)", "R(≤30)", "F1(≤30)", "AUC(≤30)"):
        table.add_column(name, justify="right" if name != "subset" else "left")
    table.add_column("train s", justify="right")  # features + both models, excl. I/O
    table.add_column("registered")
    for subset, r in results.items():
        h = r["horizon"]
        table.add_row(
            subset,
            _fmt(r["rmse"], 2),
            _fmt(r["score"], 1),
            _fmt(r["mae"], 2),
            _fmt(h["precision"], 3),
            _fmt(h["recall"], 3),
            _fmt(h["f1"], 3),
            _fmt(h["roc_auc"], 3),
            _fmt(r["train_seconds"], 1),
            versions.get(subset, ""),
        )
    return table


def _spread_table(results: dict[str, dict[str, Any]], title: str, what: str) -> Table:
    table = Table(title=title)
    pooled = all("pooled" in r for r in results.values())
    names = ["subset", what, "RMSE", "score", "MAE"] + (["pooled RMSE / score"] if pooled else [])
    for name in names:
        table.add_column(name, justify="right" if name != "subset" else "left")
    for subset, r in results.items():
        runs = r["seeds"] if "seeds" in r else r["folds"]
        cells = [
            ", ".join(map(str, runs)) if isinstance(runs, list) else str(runs),
            _pm(r["rmse"], 2),
            _pm(r["score"], 1),
            _pm(r["mae"], 2),
        ]
        if pooled:
            p = r["pooled"]
            cells.append(f"{p['rmse']:.2f} / {p['score']:.0f} ({p['n_test_engines']} engines)")
        table.add_row(subset, *cells)
    table.caption = "mean ± sample standard deviation" + (
        " over folds; pooled: every held-out engine once" if pooled else ""
    )
    return table


@app.command("cmapss")
def cmapss(
    subset: Annotated[
        str, typer.Option("--subset", help="FD001, FD002, FD003, FD004 or all")
    ] = "FD001",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="C-MAPSS directory (default: setting cmapss_dir)"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object, no table")
    ] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="model seed (default: setting seed)")
    ] = None,
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="history: each engine's whole history (default); window: trailing "
            "--window cycles only, comparable with window-based papers",
        ),
    ] = "history",
    window: Annotated[int, typer.Option("--window", help="cycles seen by --features window")] = 30,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="train once per seed (e.g. 1-5) and report mean ± std"),
    ] = None,
    cv: Annotated[
        int | None,
        typer.Option(
            "--cv",
            help="K-fold GroupKFold by engine on the training set instead of the test set",
        ),
    ] = None,
) -> None:
    """Train RUL + failure-horizon models on NASA C-MAPSS and score them on the test sets."""
    from wearwatch.config import get_settings
    from wearwatch.learn.rul.data import default_data_dir, load_subset, missing_files, missing_hint
    from wearwatch.learn.rul.features import FEATURE_KINDS
    from wearwatch.learn.rul.train import (
        TrainConfig,
        cross_validate,
        register_result,
        seed_spread,
        train_subset,
    )
    from wearwatch.store.registry import ModelRegistry, RegistryError

    subsets = _subsets(subset)
    if features not in FEATURE_KINDS:
        fail(f"--features {features!r}: choose one of {', '.join(FEATURE_KINDS)}")
    if not 2 <= window <= MAX_WINDOW:
        fail(
            f"--window {window}: expected 2 to {MAX_WINDOW} cycles "
            "(the longest C-MAPSS engine runs 543)"
        )
    if cv is not None and cv < 2:
        fail(f"--cv {cv}: need at least 2 folds")
    if seeds is not None and seed is not None:
        fail("give --seed or --seeds, not both")
    if seeds is not None and cv is not None:
        fail("--cv runs one seed (--seed); --seeds is for the test-set runs")
    settings = get_settings()
    directory = Path(data) if data is not None else default_data_dir(settings.cmapss_dir)
    if missing_files(directory, subsets):
        fail(missing_hint(directory, subsets))
    seed_list = seed_option(seeds) if seeds is not None else None
    config = TrainConfig(
        seed=settings.seed if seed is None else seed, features=features, window=window
    )
    label = f"{features} features" + (f", {window} cycles" if features == "window" else "")
    registry = ModelRegistry(settings.registry_dir)

    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    started = time.perf_counter()
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.fields[subset]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    )
    with progress:
        tasks = {
            s: progress.add_task(s, total=1.0, subset=s, stage="waiting", start=False)
            for s in subsets
        }

        def report(name: str, stage: str, fraction: float) -> None:
            progress.start_task(tasks[name])
            progress.update(tasks[name], completed=fraction, stage=stage)

        for name in subsets:
            if cv is not None:
                try:
                    train = load_subset(directory, name).train
                    results[name] = cross_validate(train, name, config, cv, progress=report)
                except (FileNotFoundError, ValueError) as exc:
                    fail(f"{name}: {exc}")
                report(name, "done", 1.0)
                continue
            runs: dict[int, dict[str, Any]] = {}
            first = None
            for s in seed_list or [config.seed]:
                try:
                    result = train_subset(directory, name, replace(config, seed=s), progress=report)
                except (FileNotFoundError, ValueError) as exc:
                    fail(f"{name}: {exc}")
                runs[s] = result.summary()
                first = first or result
            assert first is not None
            try:
                mv = register_result(first, registry)
            except (RegistryError, OSError) as exc:
                fail(f"{name}: could not register the model: {exc}")
            results[name] = seed_spread(runs) if seed_list is not None else runs[config.seed]
            versions[name] = f"{mv.family} {mv.tag}"
            report(name, f"registered {mv.family} {mv.tag} (current)", 1.0)
    total = time.perf_counter() - started

    if as_json:
        typer.echo(json.dumps(finite_json(results), allow_nan=False))
        return
    out = Console()
    if cv is not None:
        title = f"{cv}-fold GroupKFold by engine on the training sets, {label}"
        out.print(_spread_table(results, title, "folds"))
        out.print(f"total wall time {total:.1f}s (data {directory}, seed {config.seed})")
        return
    out.print(_comparison_table(results, subsets, label))
    if seed_list is not None:
        out.print(_spread_table(results, f"official test sets over seeds, {label}", "seeds"))
    else:
        out.print(_detail_table(results, versions))
    seeds_text = seeds if seed_list is not None else str(config.seed)
    out.print(
        f"total wall time {total:.1f}s (data {directory}, seed {seeds_text}, "
        f"registry {registry.root}; registered: {', '.join(versions.values())})"
    )


@app.command("anomaly")
def anomaly(
    features: Annotated[
        Path, typer.Option("--features", help="Parquet feature store (directory or file)")
    ],
    limits: Annotated[
        Path | None,
        typer.Option("--limits", help="hard limits: machine → sensor → [low, high], TOML or JSON"),
    ] = None,
    maintenance: Annotated[
        Path | None,
        typer.Option(
            "--maintenance",
            help="ground truth (JSON lines of maintenance events): windows inside faults "
            "are left out of the baselines",
        ),
    ] = None,
    registry_dir: Annotated[
        Path | None, typer.Option("--registry", help="model registry (default: setting)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object, no table")
    ] = False,
) -> None:
    """Fit anomaly baselines, PCA T²+Q and Half-Space Trees settings; register `anomaly`."""
    from wearwatch.config import get_settings
    from wearwatch.learn.anomaly.config import AnomalyConfig
    from wearwatch.learn.anomaly.training import (
        load_limits,
        load_maintenance,
        read_features,
        train_anomaly,
    )
    from wearwatch.store.registry import ModelRegistry, RegistryError

    settings = get_settings()
    try:
        frame = read_features(features)
        limit_table = load_limits(limits) if limits is not None else None
        events = load_maintenance(maintenance) if maintenance is not None else None
        trained = train_anomaly(frame, limit_table, events, AnomalyConfig(seed=settings.seed))
    except (FileNotFoundError, ValueError, OSError) as exc:
        fail(str(exc))
    registry = ModelRegistry(registry_dir if registry_dir is not None else settings.registry_dir)
    try:
        mv = registry.register(
            "anomaly",
            trained.model,
            params=trained.model.config.to_dict(),
            metrics={k: trained.summary[k] for k in ("rows", "healthy_rows", "machines")},
            promote=True,
        )
    except (RegistryError, OSError) as exc:
        fail(f"could not register the model: {exc}")
    summary = {**trained.summary, "registered": f"{mv.family} {mv.tag}"}
    if as_json:
        typer.echo(json.dumps(finite_json(summary), allow_nan=False))
        return
    out = Console()
    table = Table(title=f"anomaly model {mv.tag} (current), registry {registry.root}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "feature windows (healthy / all)", f"{summary['healthy_rows']} / {summary['rows']}"
    )
    table.add_row("machines with own baselines", str(summary["machines_with_own_baseline"]))
    fallback = summary["machines_on_fallback"]
    table.add_row("machines on the global fallback", f"{len(fallback)} {', '.join(fallback[:5])}")
    for b in summary["fallback_baselines"]:
        table.add_row(
            f"fallback {b['window_s']:g} s", f"{'+'.join(b['sensors'])} ({b['windows']} windows)"
        )
    for p in summary["pca"]:
        q = "–" if p["q_threshold"] is None else f"{p['q_threshold']:.3g}"
        table.add_row(
            f"PCA {p['window_s']:g} s, {p['components']}/{p['inputs']} components",
            f"T² ≤ {p['t2_threshold']:.3g}, Q ≤ {q}",
        )
    t = summary["thresholds"]
    table.add_row(
        "|z| bands watch / medium / high", f"{t['z_watch']:g} / {t['z_medium']:g} / {t['z_high']:g}"
    )
    table.add_row("persistence (windows)", str(t["persistence"]))
    table.add_row("HST quantile", "off" if t["hst_quantile"] is None else f"{t['hst_quantile']:g}")
    out.print(table)


def _risk_table(metrics: dict[str, Any], version: str) -> Table:
    from wearwatch.learn.risk.metrics import METRICS

    split = metrics["split"]
    table = Table(
        title=(
            f"failure within {metrics['horizon_h']:g} h, on held-out machines "
            f"({', '.join(split['test_machines'])}) after {split['cut'] or 'the start'}"
        )
    )
    for name in ("metric", "logistic regression", "LightGBM"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name in METRICS:
        table.add_row(name, _fmt(metrics["logistic"][name], 3), _fmt(metrics["lightgbm"][name], 3))
    table.caption = (
        f"prevalence {_fmt(metrics['prevalence'], 3)} (a PR-AUC without skill); "
        f"threshold {metrics['threshold']:g}; {metrics['window_s']:g} s windows: "
        f"{split['train_windows']:,} trained ({split['train_positives']:,} positive), "
        f"{split['test_windows']:,} tested ({split['test_positives']:,} positive, "
        f"{split['test_failures']} failures), {split['excluded_windows']:,} unlabelled; "
        f"registered {version}"
    )
    return table


@app.command("risk")
def risk(
    features: Annotated[
        Path, typer.Option("--features", help="feature store directory (Parquet, date/hour)")
    ],
    maintenance: Annotated[
        Path | None,
        typer.Option("--maintenance", help="JSON-lines file of maintenance events"),
    ] = None,
    bus: Annotated[
        str | None,
        typer.Option("--bus", help="read maintenance events from this log's fleet.maintenance"),
    ] = None,
    horizon: Annotated[
        str, typer.Option("--horizon", help="failure horizon in machine time, e.g. 24h")
    ] = "24h",
    registry: Annotated[
        Path | None,
        typer.Option("--registry", help="model registry directory (default: setting)"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="split and model seed (default: setting seed)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object, no table")
    ] = False,
) -> None:
    """Train the failure-risk models on the feature store and real failures; register them."""
    from wearwatch.cli.twin import parse_duration
    from wearwatch.config import get_settings
    from wearwatch.learn.risk.model import fingerprint, train_risk
    from wearwatch.learn.risk.truth import read_maintenance_file, read_maintenance_topic
    from wearwatch.store.registry import ModelRegistry, RegistryError

    if (maintenance is None) == (bus is None):
        fail("give the ground truth once: --maintenance FILE or --bus URL")
    try:
        horizon_s = parse_duration(horizon)
    except ValueError as exc:
        fail(f"--horizon: {exc}")
    if not features.is_dir():
        fail(f"--features: {features} is not a directory")
    settings = get_settings()
    if maintenance is not None:
        try:
            truth = read_maintenance_file(maintenance)
        except (OSError, ValueError) as exc:
            fail(f"--maintenance: {exc}")
    else:
        from wearwatch.wiring import open_configured_log

        log = open_configured_log(settings, bus)
        try:
            truth = read_maintenance_topic(log)
        except KeyError as exc:  # a missing topic; str() of a KeyError adds quotes
            fail(f"--bus: {exc.args[0] if exc.args else exc} on {log.url}")
        except ValueError as exc:
            fail(f"--bus: {exc}")
        finally:
            log.close()
    from wearwatch.store.features import read_feature_store

    frame = read_feature_store(features)
    if frame.empty:
        fail(f"--features: no feature vectors under {features}")
    try:
        model, metrics = train_risk(
            frame, truth, horizon_s, settings.seed if seed is None else seed
        )
    except ValueError as exc:
        fail(str(exc))
    store = ModelRegistry(registry if registry is not None else settings.registry_dir)
    try:
        mv = store.register(
            "risk",
            model,
            params={**model.params, "features": len(model.feature_names)},
            metrics=finite_json(metrics),
            data_hash=fingerprint(frame, truth),
            promote=True,
        )
    except (RegistryError, OSError) as exc:
        fail(f"could not register the model: {exc}")
    if as_json:
        typer.echo(
            json.dumps(
                finite_json({**metrics, "registered": f"{mv.family}@{mv.tag}"}), allow_nan=False
            )
        )
        return
    Console().print(_risk_table(metrics, f"{mv.family}@{mv.tag}"))
