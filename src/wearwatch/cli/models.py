"""``wearwatch models``: list, show, promote and roll back registered model versions; roll a
candidate out beside the current one (shadow or canary) and compare them live.

``promote`` is gated by the live comparison (:class:`~wearwatch.pipelines.fleet.live_metrics.
PromoteGate`) whenever the candidate has live predictions or is the running rollout; a version
with neither is promoted as before (the warm-up and ``train`` register fresh models that way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import fail, finite

app = typer.Typer(help="Inspect and manage the model registry.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Inspect and manage the model registry (root: <data_dir>/models)."""


def _registry() -> Any:
    from wearwatch.config import get_settings
    from wearwatch.store.registry import ModelRegistry

    return ModelRegistry(get_settings().registry_dir)


def _headline(metrics: dict[str, Any]) -> str:
    keys = [k for k in ("rmse", "score", "mae") if k in metrics] or sorted(metrics)[:3]
    parts = []
    for key in keys:
        value = metrics[key]
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


@app.command("list")
def list_models(
    family: Annotated[str | None, typer.Argument(help="only this model family")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Every registered version, with the current one marked."""
    from wearwatch.store.registry import RegistryError

    registry = _registry()
    try:
        versions = registry.list(family)
        current = {f: registry.current_version(f) for f in {v.family for v in versions}}
    except RegistryError as exc:
        fail(str(exc))
    if as_json:
        rows = [{**v.to_dict(), "current": current[v.family] == v.version} for v in versions]
        typer.echo(json.dumps({"root": str(registry.root), "versions": rows}, default=str))
        return
    if not versions:
        typer.echo(f"no models registered in {registry.root}")
        return
    table = Table(title=f"model registry {registry.root}")
    for name in ("family", "version", "current", "created (UTC)", "metrics", "data sha256"):
        table.add_column(name)
    for v in versions:
        is_current = current[v.family] == v.version
        table.add_row(
            v.family,
            v.tag,
            "[bold green]✓ current[/bold green]" if is_current else "",
            v.created_at,
            _headline(v.metrics),
            v.data_hash[:12],
        )
    Console().print(table)


@app.command("show")
def show(
    family: Annotated[str, typer.Argument(help="model family, e.g. rul-FD001")],
    version: Annotated[str | None, typer.Argument(help="version (default: current)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """One version's metadata: parameters, metrics, data hash, code version, checksums."""
    from wearwatch.store.registry import RegistryError

    registry = _registry()
    try:
        mv = registry.show(family, version)
        pointer = registry.pointer(family)
    except RegistryError as exc:
        fail(str(exc))
    info = {**mv.to_dict(), "current": pointer["version"] == mv.version}
    if as_json:
        typer.echo(json.dumps(info, default=str))
        return
    table = Table(title=f"{mv.family} {mv.tag}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("current", "yes" if info["current"] else "no")
    table.add_row("created (UTC)", mv.created_at)
    table.add_row("object", mv.object_type)
    table.add_row("training data sha256", mv.data_hash)
    code = mv.code_version
    table.add_row("code", f"wearwatch {code.get('wearwatch')} git {code.get('git_commit') or '?'}")
    for name, digest in mv.artifacts.items():
        table.add_row(f"sha256 {name}", digest)
    table.add_row("metrics", json.dumps(mv.metrics, sort_keys=True, default=str))
    table.add_row("params", json.dumps(mv.params, sort_keys=True, default=str))
    history = ", ".join(
        f"{h['action']} v{h['version']:04d}" for h in pointer.get("history", [])[-5:]
    )
    table.add_row("recent pointer history", history or "–")
    table.add_row("path", str(mv.path))
    Console().print(table)


#: Families the live stream can roll out (the fleet flow scores risk models side by side).
ROLLOUT_FAMILIES = ("risk",)


def _comparison(registry: Any, family: str, candidate: int) -> Any:
    """The live comparison of ``candidate`` with the current version, from the configured log."""
    from wearwatch.pipelines.fleet.live_metrics import live_comparison

    with _configured_log() as log:
        return live_comparison(log, registry, family, candidate)


@contextmanager
def _configured_log() -> Iterator[Any]:
    from wearwatch.config import get_settings
    from wearwatch.wiring import open_configured_log

    log = open_configured_log(get_settings())
    try:
        yield log
    finally:
        log.close()


@app.command("promote")
def promote(
    family: Annotated[str, typer.Argument(help="model family")],
    version: Annotated[str, typer.Argument(help="version to make current, e.g. 3 or v0003")],
    force: Annotated[
        bool, typer.Option("--force", help="promote even if its live metrics are worse")
    ] = False,
) -> None:
    """Make a version current (after verifying its checksum). A candidate with live
    predictions (or the running rollout's) must not be worse than the current version on the
    same events: Brier ≤ current × 1.01 on ≥ 100 scored predictions, unless --force."""
    from wearwatch.pipelines.fleet.live_metrics import promotion_verdict
    from wearwatch.store.registry import RegistryError, parse_version, version_tag

    registry = _registry()
    try:
        registry.verify(family, version)
        number = parse_version(version)
        rollout = registry.rollout(family)
        with _configured_log() as log:
            verdict = promotion_verdict(log, registry, family, number)
        forced = verdict is not None and not verdict.ok
        if forced and not force:
            fail(f"{verdict.reason} (--force)", code=1)
        if forced:
            typer.echo(f"forced: {verdict.reason}", err=True)
        mv = registry.promote(family, number, forced=forced)
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    finished = f" (rollout {rollout.describe()} finished)" if rollout else ""
    typer.echo(f"{mv.family}: current is now {version_tag(mv.version)}{finished}")


@app.command("rollout")
def rollout(
    family: Annotated[str, typer.Argument(help="model family (risk)")],
    version: Annotated[str | None, typer.Argument(help="candidate version, e.g. 4")] = None,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="score beside the current one, never serve")
    ] = False,
    canary: Annotated[
        float | None,
        typer.Option(
            "--canary",
            help="serve this share of machines, in (0, 1]",
            metavar="SHARE",
            callback=finite(),  # the bounds are the registry's (one rule, one message)
        ),
    ] = None,
    abort: Annotated[bool, typer.Option("--abort", help="end the running rollout")] = False,
) -> None:
    """Start a rollout of VERSION (--shadow or --canary SHARE), or end it (--abort). A canary
    serves the machines whose SHA-256 cohort point is below SHARE (the same ones every run);
    ``wearwatch models promote`` finishes it. The fleet worker restarts to pick it up."""
    from wearwatch.store.registry import RegistryError, version_tag

    chosen = [name for name, on in (("--shadow", shadow), ("--canary", canary is not None),
                                    ("--abort", abort)) if on]  # fmt: skip
    if len(chosen) != 1:
        fail("give exactly one of --shadow, --canary SHARE or --abort")
    if abort and version is not None:
        fail(f"--abort ends the running rollout; drop the version {version!r}")
    if not abort and version is None:
        fail(f"{chosen[0]}: which version? (wearwatch models rollout {family} VERSION ...)")
    if not abort and family not in ROLLOUT_FAMILIES:
        fail(
            f"model {family!r}: the live stream rolls out {', '.join(ROLLOUT_FAMILIES)} models "
            "only (the fleet flow scores them side by side)"
        )
    registry = _registry()
    try:
        if abort:
            ended = registry.abort_rollout(family)
            typer.echo(
                f"{family}: rollout of {version_tag(ended.version)} ({ended.describe()}) aborted; "
                f"v{registry.current_version(family):04d} serves every machine"
            )
            return
        plan = registry.start_rollout(
            family, version or "", "shadow" if shadow else "canary", canary
        )
    except RegistryError as exc:
        fail(str(exc))
    typer.echo(
        f"{family}: {version_tag(plan.version)} rolled out ({plan.describe()}) beside "
        f"v{registry.current_version(family):04d}"
    )


@app.command("compare")
def compare_versions(
    family: Annotated[str, typer.Argument(help="model family (risk)")],
    version: Annotated[
        str | None, typer.Argument(help="candidate (default: the running rollout's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """The live Brier score and log loss of the current version and a candidate, on the same
    health windows of the log whose horizon has passed, and the promote gate's verdict."""
    from wearwatch.pipelines.fleet.live_metrics import PromoteGate
    from wearwatch.store.registry import RegistryError, parse_version

    registry = _registry()
    try:
        registry.show(family)
        if version is None:
            plan = registry.rollout(family)
            if plan is None:
                fail(f"model {family!r}: no rollout is running; name the candidate version")
            number = plan.version
        else:
            number = parse_version(version)
            registry.show(family, number)
        comparison = _comparison(registry, family, number)
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    verdict = PromoteGate().verdict(comparison)
    if as_json:
        out = {"family": family, **comparison.to_dict(), "promote_ok": verdict.ok,
               "verdict": verdict.reason}  # fmt: skip
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"{family}: live comparison on the same health windows")
    for name in ("", "version", "predictions", "scored", "Brier", "log loss"):
        table.add_column(name, justify="left" if name in ("", "version") else "right")
    for role, m in (("current", comparison.current), ("candidate", comparison.candidate)):
        table.add_row(
            role,
            m.version,
            str(m.predictions),
            str(m.scored),
            "–" if m.scored == 0 else f"{m.brier:.4f}",
            "–" if m.scored == 0 else f"{m.log_loss:.4f}",
        )
    Console().print(table)
    end = comparison.end.isoformat() if comparison.end else "–"
    typer.echo(f"scored: predictions whose horizon has passed by {end}, on pairs both made")
    typer.echo(("promote: ok — " if verdict.ok else "promote: refused — ") + verdict.reason)


@app.command("rollback")
def rollback(family: Annotated[str, typer.Argument(help="model family")]) -> None:
    """Make the previously current version current again."""
    from wearwatch.store.registry import RegistryError

    registry = _registry()
    try:
        before = registry.current_version(family)
        mv = registry.rollback(family)
    except RegistryError as exc:
        fail(str(exc))
    typer.echo(f"{mv.family}: rolled back from v{before:04d} to {mv.tag}")
