"""``wearwatch sink``: fill a store from the log — the analytics tables, in DuckDB or
ClickHouse (``WEARWATCH_ANALYTICS``)."""

from __future__ import annotations

import signal
import threading

import typer

from wearwatch.cli.errors import describe, fail

app = typer.Typer(help="Fill stores from the log.", no_args_is_help=True)

#: What ``sink analytics`` reads by default: every output topic that fills a typed table.
OUTPUT_TOPICS = ("mill.outcomes", "fleet.scores", "fleet.health", "fleet.alarms")


@app.command("analytics")
def analytics(
    topics: list[str] = typer.Option(
        None,
        "--topics",
        help="topics to sink, comma-separated or repeated (default: those of "
        f"{', '.join(OUTPUT_TOPICS)} on the log)",
    ),
    follow: bool = typer.Option(False, help="keep following the topics until SIGINT/SIGTERM"),
    group: str = typer.Option("analytics", help="consumer group (a restart resumes from it)"),
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
    store_url: str = typer.Option(
        None, "--analytics", help="store URL (default: WEARWATCH_ANALYTICS, else DuckDB)"
    ),
) -> None:
    """Write the records of the output topics to the analytics tables, once per record: a
    replay (a fresh --group, a crash before the commit) leaves the tables as they were."""
    from wearwatch.config import get_settings
    from wearwatch.store.analytics import TABLES, open_analytics, sink_topics
    from wearwatch.wiring import open_configured_log

    settings = get_settings()
    try:
        log = open_configured_log(settings, bus)
    except ValueError as exc:
        fail(describe(exc))
    existing = log.topics()
    if topics:
        chosen = [t.strip() for item in topics for t in item.split(",") if t.strip()]
        missing = [t for t in chosen if t not in existing]
        if missing:
            fail(f"--topics {missing[0]!r}: not on {log.url} (see `wearwatch log topics`)")
    else:
        chosen = [t for t in OUTPUT_TOPICS if t in existing]
        if not chosen:
            fail(f"none of {', '.join(OUTPUT_TOPICS)} is on {log.url}: run a pipeline first")
    store = open_analytics(store_url or settings.analytics_url)
    stop: threading.Event | None = None
    if follow:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())  # type: ignore[union-attr]
        typer.echo(f"following {', '.join(chosen)} → {store.url} (Ctrl-C stops)", err=True)
    try:
        written = sink_topics(log, store, chosen, group, stop=stop)
        counts = ", ".join(f"{t.name} {store.count(t.name):,}" for t in TABLES)
    finally:
        store.close()
        log.close()
    typer.echo(f"analytics: {written:,} new records from {', '.join(chosen)} → {store.url}")
    typer.echo(f"rows: {counts}")
