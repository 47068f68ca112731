"""The analytics store (DuckDB, embedded) and the idempotent sink that fills it.

Every row written from the log carries the record's idempotency id (``rid``) as its primary
key, so at-least-once delivery — a replay after a crash or a rebalance — still leaves exactly
one row per output.

Tables (created on first use):

``events``
    ``rid VARCHAR PRIMARY KEY, topic VARCHAR, type VARCHAR, key VARCHAR, ts TIMESTAMPTZ,
    payload JSON`` — any event, as its JSON.
``pass_outcomes``
    one row per joined mill pass: ``rid, ts, slab_id, pass_no, line, actual_force_kn,
    baseline_force_kn, served_force_kn, source, physics_ape, served_ape, model_ape (JSON:
    learner → APE %), router_state``.
``anomaly_scores``
    one row per scored window (``fleet.scores``): ``rid, ts, machine_id, window_s, severity,
    score, category, reason, triggers (JSON list), model_version``.
``machine_health``
    one row per health update (``fleet.health``): ``rid, ts, machine_id, risk, risk_level,
    health, time_to_maintenance_h, explanation (JSON: input → value), model_version``.
``alarms``
    one row per alarm transition (``fleet.alarms``): ``rid, ts, alarm_id, machine_id,
    alarm_type, severity, status, acknowledged, transition, reason, triggers (JSON list),
    raised_at, ack_by, ack_at, refreshes`` — an alarm's history is its rows by ``ts``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from wearwatch.bus.base import Log, Record

_TABLES = {
    "events": """CREATE TABLE IF NOT EXISTS events (
        rid VARCHAR PRIMARY KEY, topic VARCHAR NOT NULL, type VARCHAR NOT NULL,
        key VARCHAR, ts TIMESTAMPTZ, payload JSON NOT NULL)""",
    "pass_outcomes": """CREATE TABLE IF NOT EXISTS pass_outcomes (
        rid VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, slab_id VARCHAR NOT NULL,
        pass_no INTEGER NOT NULL, line VARCHAR NOT NULL, actual_force_kn DOUBLE,
        baseline_force_kn DOUBLE, served_force_kn DOUBLE, source VARCHAR,
        physics_ape DOUBLE, served_ape DOUBLE, model_ape JSON, router_state VARCHAR)""",
    "anomaly_scores": """CREATE TABLE IF NOT EXISTS anomaly_scores (
        rid VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, machine_id VARCHAR NOT NULL,
        window_s DOUBLE, severity VARCHAR NOT NULL, score DOUBLE, category VARCHAR,
        reason VARCHAR, triggers JSON, model_version VARCHAR)""",
    "machine_health": """CREATE TABLE IF NOT EXISTS machine_health (
        rid VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, machine_id VARCHAR NOT NULL,
        risk DOUBLE, risk_level VARCHAR, health DOUBLE, time_to_maintenance_h DOUBLE,
        explanation JSON, model_version VARCHAR)""",
    "alarms": """CREATE TABLE IF NOT EXISTS alarms (
        rid VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, alarm_id VARCHAR NOT NULL,
        machine_id VARCHAR NOT NULL, alarm_type VARCHAR NOT NULL, severity VARCHAR NOT NULL,
        status VARCHAR NOT NULL, acknowledged BOOLEAN, transition VARCHAR NOT NULL,
        reason VARCHAR, triggers JSON, raised_at TIMESTAMPTZ, ack_by VARCHAR,
        ack_at TIMESTAMPTZ, refreshes INTEGER)""",
}

_EVENT_COLUMNS = ("rid", "topic", "type", "key", "ts", "payload")


@dataclass(frozen=True)
class _RowTable:
    """A table with one row per event of a type: its columns are the event's fields."""

    name: str
    columns: tuple[str, ...]
    #: Columns stored as JSON (lists, dicts).
    json: frozenset[str] = frozenset()

    def row(self, rid: str, payload: dict[str, Any]) -> tuple[Any, ...]:
        return (
            rid,
            *(
                msgspec.json.encode(payload.get(c)).decode() if c in self.json else payload.get(c)
                for c in self.columns
            ),
        )


#: Event type tag → the table its events also fill (besides ``events``).
_ROW_TABLES: dict[str, _RowTable] = {
    "pass_outcome": _RowTable(
        "pass_outcomes",
        (
            "ts",
            "slab_id",
            "pass_no",
            "line",
            "actual_force_kn",
            "baseline_force_kn",
            "served_force_kn",
            "source",
            "physics_ape",
            "served_ape",
            "model_ape",
            "router_state",
        ),
        frozenset({"model_ape"}),
    ),
    "anomaly_score": _RowTable(
        "anomaly_scores",
        (
            "ts",
            "machine_id",
            "window_s",
            "severity",
            "score",
            "category",
            "reason",
            "triggers",
            "model_version",
        ),
        frozenset({"triggers"}),
    ),
    "machine_health": _RowTable(
        "machine_health",
        (
            "ts",
            "machine_id",
            "risk",
            "risk_level",
            "health",
            "time_to_maintenance_h",
            "explanation",
            "model_version",
        ),
        frozenset({"explanation"}),
    ),
    "alarm": _RowTable(
        "alarms",
        (
            "ts",
            "alarm_id",
            "machine_id",
            "alarm_type",
            "severity",
            "status",
            "acknowledged",
            "transition",
            "reason",
            "triggers",
            "raised_at",
            "ack_by",
            "ack_at",
            "refreshes",
        ),
        frozenset({"triggers"}),
    ),
}
#: Columns holding event times (ISO strings in the JSON, cast on insert).
_TIME_COLUMNS = frozenset({"ts", "raised_at", "ack_at"})


class AnalyticsStore:
    """A DuckDB file; ``AnalyticsStore(":memory:")`` for tests."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = duckdb.connect(str(path))
        for ddl in _TABLES.values():
            self.conn.execute(ddl)

    def write_records(self, records: Sequence[Record]) -> int:
        """Insert each record's event once per rid; returns how many rows were new."""
        generic: list[tuple[Any, ...]] = []
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for record in records:
            if not record.rid:
                raise ValueError(
                    f"record {record.topic}/{record.partition}@{record.offset}: no rid, "
                    "so it cannot be written idempotently"
                )
            payload = msgspec.json.decode(record.value)
            kind = payload.get("type", "") if isinstance(payload, dict) else ""
            table = _ROW_TABLES.get(kind)
            if table is not None:
                rows.setdefault(kind, []).append(table.row(record.rid, payload))
            generic.append(
                (
                    record.rid,
                    record.topic,
                    kind,
                    (record.key or b"").decode(errors="replace"),
                    payload.get("ts") if isinstance(payload, dict) else None,
                    record.value.decode(),
                )
            )
        before = self.count("events")
        # Bulk inserts through Arrow: DuckDB's executemany goes row by row.
        if generic:
            self._insert("events", _EVENT_COLUMNS, generic)
        for kind, table_rows in rows.items():
            table = _ROW_TABLES[kind]
            self._insert(table.name, ("rid", *table.columns), table_rows)
        return self.count("events") - before

    def _insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        batch = pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)})
        self.conn.register("_incoming", batch)
        try:
            names = ", ".join(columns)
            casts = ", ".join(
                f"CAST({c} AS TIMESTAMPTZ)" if c in _TIME_COLUMNS else c for c in columns
            )
            self.conn.execute(
                f"INSERT OR IGNORE INTO {table} ({names}) SELECT {casts} FROM _incoming"
            )
        finally:
            self.conn.unregister("_incoming")

    def count(self, table: str) -> int:
        if table not in _TABLES:
            raise ValueError(f"table {table!r}: unknown; choose one of {sorted(_TABLES)}")
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        self.conn.close()


def sink_topics(
    log: Log,
    store: AnalyticsStore,
    topics: Sequence[str],
    group: str,
    max_records: int = 2000,
    idle_timeout_s: float = 10.0,
) -> int:
    """Drain ``topics`` into the store (at-least-once; the rid key makes it exactly-once).

    Returns once every assigned partition has been read to its end offset, or after
    ``idle_timeout_s`` without a record (e.g. the group never got an assignment). Positions
    are committed only after the rows are written, so a crash in between replays records
    that the store then ignores.
    """
    consumer = log.consumer(group, list(topics))
    written = 0
    idle_since = time.monotonic()
    try:
        while True:
            records = consumer.poll(max_records, 0.2)
            if records:
                idle_since = time.monotonic()
                written += store.write_records(records)
                positions: dict[tuple[str, int], int] = {}
                for record in records:
                    positions[(record.topic, record.partition)] = record.offset + 1
                consumer.commit(positions)
                continue
            if time.monotonic() - idle_since >= idle_timeout_s:
                break
            assigned = consumer.assignment()
            ends = {t: log.end_offsets(t) for t in topics}
            if assigned and all(
                consumer.position(tp) >= ends[tp[0]].get(tp[1], 0) for tp in assigned
            ):
                break
    finally:
        consumer.close()
    return written
