"""``wearwatch demo``: the longest pipeline there is, end to end, on embedded defaults.

The mill twin (abrupt roll-wear shock) writes to the embedded log; the mill worker joins,
learns and routes with exactly-once checkpoints; the idempotent sink fills the analytics store
(``WEARWATCH_ANALYTICS`` if set, else a DuckDB file in the demo directory); the summary is read
back from it (the whole store: a ClickHouse store keeps earlier runs' rows).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import fail

if TYPE_CHECKING:
    from wearwatch.store.analytics import AnalyticsStore


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        scenario: str = typer.Option("abrupt", help="none, gradual, abrupt or cycle"),
        passes: int = typer.Option(2400, min=100, help="passes the twin rolls"),
        seed: int = typer.Option(7, help="seed of the twin and the learners"),
        fresh: bool = typer.Option(True, help="start from an empty demo directory"),
    ) -> None:
        """Twin → log → mill pipeline → analytics store, then a summary from the store."""
        from wearwatch.bus.sqlite import SqliteLog
        from wearwatch.config import get_settings
        from wearwatch.pipelines.mill.flow import mill_flow
        from wearwatch.runtime.flow_worker import FlowWorker
        from wearwatch.store.analytics import open_analytics, sink_topics
        from wearwatch.topics import MILL_OUTCOMES
        from wearwatch.twin.mill.publish import publish
        from wearwatch.twin.mill.scenarios import SCENARIOS
        from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig
        from wearwatch.wiring import worker_options

        if scenario not in SCENARIOS:
            fail(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
        console = Console()
        settings = get_settings()
        workdir = settings.data_dir / "demo"
        if fresh and workdir.exists():
            shutil.rmtree(workdir)
        path = workdir / "log.db"
        log = SqliteLog(path)
        twin = MillTwin(
            MillTwinConfig(
                seed=seed,
                scenario=scenario,
                planned_passes=passes,
                loss_share=0.01,
                duplicate_share=0.01,
                late_share=0.005,
            )
        )
        with console.status("mill twin rolling slabs (virtual time)…"):
            stats = publish(log, twin.events(max_passes=passes))
        console.print(f"twin: {stats.passes:,} passes, {stats.events:,} events → {log.url}")
        with console.status("mill pipeline: join → learn → route (exactly once)…"):
            counters = FlowWorker(
                lambda: SqliteLog(path),
                mill_flow(seed=seed),
                "mill",
                worker_options(settings, exit_when_idle=True, poll_timeout_s=0.0),
            ).run(install_signals=False)
        console.print(
            f"pipeline: {counters['requests']:,} requests, {counters['actuals']:,} measurements, "
            f"{counters['joined']:,} passes joined, "
            f"{counters['orphans']:,} orphans ({counters['too_late']:,} too late), "
            f"{counters['duplicates']:,} duplicates, {counters['dead_lettered']:,} dead-lettered"
        )
        store = open_analytics(settings.analytics or f"duckdb:///{workdir / 'analytics.duckdb'}")
        written = sink_topics(log, store, [MILL_OUTCOMES.name], "analytics")
        console.print(f"analytics: {written:,} pass outcomes → {store.url}")
        _summary(console, store)
        store.close()
        log.close()


#: The summary: the passes in eight equal slices, each slice's APEs and share of fallbacks. Plain
#: SQL that DuckDB and ClickHouse both run, with the same result.
SUMMARY_SQL = """
    WITH numbered AS (
        SELECT *, row_number() OVER (ORDER BY ts, slab_id, pass_no) AS n,
               count(*) OVER () AS total
        FROM pass_outcomes)
    SELECT min(n), max(n), round(avg(physics_ape), 2), round(avg(served_ape), 2),
           round(100 * avg(CASE WHEN source = 'model' THEN 0 ELSE 1 END), 1)
    FROM numbered GROUP BY floor((n - 1) * 8 / total) ORDER BY 1
"""


def _summary(console: Console, store: AnalyticsStore) -> None:
    rows = store.query(SUMMARY_SQL)
    backend = store.url.split(":", 1)[0]
    table = Table(title=f"roll force: physics baseline vs served value (from {backend})")
    for col in ("passes", "physics APE %", "served APE %", "fallback %"):
        table.add_column(col, justify="right")
    for first, last, physics, served, fallback in rows:
        table.add_row(f"{first:,}–{last:,}", f"{physics:.2f}", f"{served:.2f}", f"{fallback:.1f}")
    console.print(table)
