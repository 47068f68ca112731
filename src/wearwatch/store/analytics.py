"""The analytics store: its tables (one declaration for every backend), the protocol a backend
implements, and the idempotent sink that fills it from the log.

Every row written from the log carries the record's idempotency id (``rid``), so at-least-once
delivery — a replay after a crash or a rebalance — still leaves exactly one row per output:
DuckDB (embedded, the default; :mod:`wearwatch.store.analytics_duckdb`) makes ``rid`` the
primary key and ignores a second insert; ClickHouse (:mod:`wearwatch.store.analytics_clickhouse`)
stores each table as a ``ReplacingMergeTree`` ordered by ``rid``, so duplicates collapse on
merge and reads with ``FINAL`` see one row per record. :func:`open_analytics` picks the backend
from a URL: ``duckdb:///path.duckdb``, ``clickhouse://[user:password@]host:port/database`` or
``chdb:///path`` (ClickHouse's engine embedded in the process).

Tables (created on first use; the columns of each are :data:`TABLES`):

``events``
    ``rid, topic, type, key, ts, payload (JSON)`` — any event, as its JSON.
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

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pyarrow as pa

from wearwatch.bus.base import Log, Record, caught_up

#: What a column holds; each backend maps a kind to its own type. ``label``: text of few
#: distinct values (ClickHouse stores it as ``LowCardinality``); ``json``: a JSON document
#: (lists, dicts) as text; ``time``: an event time (UTC, microseconds).
ColumnKind = Literal["text", "label", "float", "int", "bool", "time", "json"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "label": pa.string(),
    "json": pa.string(),
    "float": pa.float64(),
    "int": pa.int32(),
    "bool": pa.bool_(),
    "time": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    #: Whether the value may be missing (``None``); every other column is ``NOT NULL``.
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    """A table keyed by ``rid``. ``event_type``: the tag of the events whose fields fill its
    columns (``""``: the ``events`` table, filled from the record itself)."""

    name: str
    columns: tuple[Column, ...]
    event_type: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every column, ``rid`` first."""
        return ("rid", *(c.name for c in self.columns))


def _cols(spec: str) -> tuple[Column, ...]:
    """``"name:kind name:kind? ..."`` (``?``: nullable) → columns.

    >>> [(c.name, c.kind, c.nullable) for c in _cols("ts:time ack_at:time?")]
    [('ts', 'time', False), ('ack_at', 'time', True)]
    """
    columns = []
    for item in spec.split():
        name, kind = item.split(":")
        columns.append(Column(name, kind.rstrip("?"), kind.endswith("?")))  # type: ignore[arg-type]
    return tuple(columns)


EVENTS = Table("events", _cols("topic:label type:label key:text ts:time? payload:json"))
#: Every table; the typed ones hold one row per event of their type (besides ``events``).
TABLES: tuple[Table, ...] = (
    EVENTS,
    Table(
        "pass_outcomes",
        _cols(
            "ts:time slab_id:text pass_no:int line:label actual_force_kn:float "
            "baseline_force_kn:float served_force_kn:float source:label physics_ape:float "
            "served_ape:float model_ape:json router_state:label"
        ),
        "pass_outcome",
    ),
    Table(
        "anomaly_scores",
        _cols(
            "ts:time machine_id:label window_s:float severity:label score:float "
            "category:label reason:text triggers:json model_version:label"
        ),
        "anomaly_score",
    ),
    Table(
        "machine_health",
        _cols(
            "ts:time machine_id:label risk:float risk_level:label health:float "
            "time_to_maintenance_h:float? explanation:json model_version:label"
        ),
        "machine_health",
    ),
    Table(
        "alarms",
        _cols(
            "ts:time alarm_id:text machine_id:label alarm_type:label severity:label "
            "status:label acknowledged:bool transition:label reason:text triggers:json "
            "raised_at:time ack_by:label ack_at:time? refreshes:int"
        ),
        "alarm",
    ),
)
TABLE_NAMES = frozenset(t.name for t in TABLES)
_BY_TYPE = {t.event_type: t for t in TABLES if t.event_type}


class AnalyticsError(RuntimeError):
    """The analytics store could not do what was asked (server unreachable, a table refused
    the rows …); the message names the store's URL (password redacted) and the table."""


class AnalyticsStore(Protocol):
    """What the sink writes to and readers query: one implementation per backend."""

    #: The store's URL, password redacted (safe to print).
    url: str

    def write_records(self, records: Sequence[Record]) -> int:
        """Write each record's rows once per rid; return how many records were new."""
        ...

    def count(self, table: str) -> int:
        """Rows of ``table``, one per record however often it was written."""
        ...

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` in the backend's dialect (DuckDB: ``?`` parameters; ClickHouse:
        ``{name:Type}`` ones), each record counted once."""
        ...

    def close(self) -> None: ...


def check_table(table: str) -> str:
    """``table`` if it is one of the store's tables, else a ValueError naming the choices."""
    if table not in TABLE_NAMES:
        raise ValueError(f"table {table!r}: unknown; choose one of {sorted(TABLE_NAMES)}")
    return table


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    >>> redacted("clickhouse://ana:s3cret@ch.plant:8123/wearwatch")
    'clickhouse://ana:***@ch.plant:8123/wearwatch'
    >>> redacted("duckdb:///var/analytics.duckdb")
    'duckdb:///var/analytics.duckdb'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_analytics(url: str) -> AnalyticsStore:
    """The store at ``url``; a ValueError names a URL no backend takes.

    >>> open_analytics("sqlite:///x.db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: analytics='sqlite:///x.db': expected duckdb:///path.duckdb, clickhouse://...
    """
    if url.startswith("duckdb:///"):
        from wearwatch.store.analytics_duckdb import DuckDBStore

        path = url.removeprefix("duckdb:///")
        if not path:
            raise ValueError(f"analytics={url!r}: no path; expected duckdb:///path.duckdb")
        return DuckDBStore(path)
    if url.startswith(("clickhouse://", "chdb:///")):
        from wearwatch.store.analytics_clickhouse import ClickHouseStore

        return ClickHouseStore.open(url)
    raise ValueError(
        f"analytics={redacted(url)!r}: expected duckdb:///path.duckdb, "
        "clickhouse://[user:password@]host:port/database or chdb:///path"
    )


def table_batches(records: Sequence[Record]) -> dict[str, pa.Table]:
    """The rows ``records`` add, as one Arrow table per store table (``events`` last, so a
    record found there has had all its rows written); a rid seen twice counts once.

    Every backend inserts exactly these batches: the rows are built once, here.
    """
    events: list[tuple[Any, ...]] = []
    typed: dict[str, list[tuple[Any, ...]]] = {}
    seen: set[str] = set()
    for record in records:
        if not record.rid:
            raise ValueError(
                f"record {record.topic}/{record.partition}@{record.offset}: no rid, "
                "so it cannot be written idempotently"
            )
        if record.rid in seen:
            continue
        seen.add(record.rid)
        payload = msgspec.json.decode(record.value)
        fields = payload if isinstance(payload, dict) else {}
        kind = fields.get("type", "")
        table = _BY_TYPE.get(kind) if isinstance(kind, str) else None
        if table is not None:
            typed.setdefault(table.name, []).append(
                (record.rid, *(fields.get(c.name) for c in table.columns))
            )
        events.append(
            (
                record.rid,
                record.topic,
                kind if isinstance(kind, str) else "",
                (record.key or b"").decode(errors="replace"),
                fields.get("ts"),
                record.value.decode(),
            )
        )
    batches = {t.name: _arrow(t, typed[t.name]) for t in TABLES if t.name in typed}
    if events:
        batches[EVENTS.name] = _arrow(EVENTS, events, json_as_is=True)
    return batches


def _arrow(table: Table, rows: list[tuple[Any, ...]], json_as_is: bool = False) -> pa.Table:
    """Rows → an Arrow table typed by the declaration; a value that does not fit its column is
    a ValueError naming the table, the column and the value."""
    arrays = {"rid": pa.array([r[0] for r in rows], pa.string())}
    for i, column in enumerate(table.columns, start=1):
        values = [r[i] for r in rows]
        if column.kind == "json" and not json_as_is:
            values = [msgspec.json.encode(v).decode() for v in values]
        try:
            if column.kind == "time":  # ISO 8601 strings in the JSON, parsed vectorised
                array = pa.array(values, pa.string()).cast(ARROW_TYPES["time"])
            else:
                array = pa.array(values, ARROW_TYPES[column.kind])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"table {table.name} column {column.name}: {_first_bad(values, column)!r} "
                f"is not a {column.kind} ({exc})"
            ) from None
        if not column.nullable and array.null_count:
            raise ValueError(
                f"table {table.name} column {column.name}: missing in record "
                f"{rows[array.to_pylist().index(None)][0]!r}"
            )
        arrays[column.name] = array
    return pa.table(arrays)


def _first_bad(values: list[Any], column: Column) -> Any:
    """The first value Arrow refuses for ``column`` (for the error message)."""
    for value in values:
        try:
            if column.kind == "time":
                pa.array([value], pa.string()).cast(ARROW_TYPES["time"])
            else:
                pa.array([value], ARROW_TYPES[column.kind])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            return value
    return values[0] if values else None


def sink_topics(
    log: Log,
    store: AnalyticsStore,
    topics: Sequence[str],
    group: str,
    max_records: int = 2000,
    idle_timeout_s: float = 10.0,
    stop: threading.Event | None = None,
) -> int:
    """Drain ``topics`` into the store (at-least-once; the rid makes it exactly-once).

    Returns once every assigned partition has been read to its end offset, or after
    ``idle_timeout_s`` without a record (e.g. the group never got an assignment). With ``stop``
    it follows the topics instead, until ``stop`` is set. Positions are committed only after
    the rows are written, so a crash in between replays records that the store then ignores.
    """
    consumer = log.consumer(group, list(topics))
    written = 0
    idle_since = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            records = consumer.poll(max_records, 0.2)
            if records:
                idle_since = time.monotonic()
                written += store.write_records(records)
                positions: dict[tuple[str, int], int] = {}
                for record in records:
                    positions[(record.topic, record.partition)] = record.offset + 1
                consumer.commit(positions)
                if stop is None and caught_up(log, consumer, topics):
                    break  # everything is written: no wait for an empty poll
                continue
            if stop is not None:
                continue
            if time.monotonic() - idle_since >= idle_timeout_s:
                break
            if caught_up(log, consumer, topics):
                break
    finally:
        consumer.close()
    return written
