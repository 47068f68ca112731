"""``wearwatch models``: list, show, promote and roll back registered model versions."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import fail

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


@app.command("promote")
def promote(
    family: Annotated[str, typer.Argument(help="model family")],
    version: Annotated[str, typer.Argument(help="version to make current, e.g. 3 or v0003")],
) -> None:
    """Make a version current (after verifying its checksum)."""
    from wearwatch.store.registry import RegistryError

    registry = _registry()
    try:
        registry.verify(family, version)
        mv = registry.promote(family, version)
    except RegistryError as exc:
        fail(str(exc))
    typer.echo(f"{mv.family}: current is now {mv.tag}")


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
