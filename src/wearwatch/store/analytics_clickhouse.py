"""The analytics store in ClickHouse: ``ReplacingMergeTree`` tables ordered by ``rid``.

ClickHouse has no unique key: a replayed record is inserted again, and the table's merges
collapse the rows of one ``rid`` into one (its sorting key). Until a merge has run, reads that
must be exact say ``FINAL``; :meth:`ClickHouseStore.count` and :meth:`ClickHouseStore.query`
do (the latter with the ``final`` setting, which applies ``FINAL`` to every table of a query).
Rows go in as one Arrow batch per table per poll, never row by row.

Types: event times are ``DateTime64(6, 'UTC')`` (microseconds, like the contract's
timestamps); JSON documents are ``String`` (the bytes DuckDB stores, read with
``JSONExtract*``; the ``JSON`` type would come back as dicts on one transport and text on
another); few-valued text (machine ids, severities, statuses) is ``LowCardinality(String)``.
Typed tables are partitioned by month of ``ts`` (a record's ``ts`` never changes, so its
duplicates share a partition and still collapse).

Two transports behind one client interface — clickhouse-connect's ``Client``, whose facade
(query binding, the insert's Native encoding, result decoding) is shared and only the backend
differs:

* ``clickhouse://[user:password@]host:port/database[?secure=1]``: a ClickHouse server over
  HTTP(S) (port 8123 by default);
* ``chdb:///path[?database=name]``: ClickHouse's engine embedded in this process through the
  ``chdb`` package, its data persisted at ``path`` (one path per process: chdb's limit).

The database (default ``wearwatch``) is created if missing.

Tested against ClickHouse 26.9 embedded through ``chdb`` — the current engine, so the same SQL,
``ReplacingMergeTree`` and ``FINAL`` as a server — and the HTTP transport against that engine
behind a minimal HTTP front (``tests/clickhouse_http.py``). Debian's ``clickhouse-server``
(18.16, 2018) is no faithful stand-in: no ``DateTime64``, no Arrow format, and
clickhouse-connect's handshake fails against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa
from clickhouse_connect.driver.exceptions import Error as DriverError

from wearwatch.bus.base import Record
from wearwatch.store.analytics import (
    EVENTS,
    TABLES,
    AnalyticsError,
    Column,
    Table,
    check_table,
    redacted,
    table_batches,
)

DEFAULT_DATABASE = "wearwatch"
DEFAULT_PORT = 8123
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

_TYPES = {
    "text": "String",
    "label": "LowCardinality(String)",
    "json": "String",
    "float": "Float64",
    "int": "Int32",
    "bool": "Bool",
    "time": "DateTime64(6, 'UTC')",
}


class ClickHouseClient(Protocol):
    """The part of clickhouse-connect's ``Client`` the store uses; its HTTP and chdb clients
    both provide it."""

    database: str | None

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def insert_arrow(
        self, table: str, arrow_table: pa.Table, database: str | None = None
    ) -> Any: ...

    def query(self, query: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def close(self) -> None: ...


def ddl(table: Table, database: str) -> str:
    """The ``CREATE TABLE`` statement of ``table`` in ``database``.

    >>> from wearwatch.store.analytics import EVENTS
    >>> print(ddl(EVENTS, "wearwatch"))
    CREATE TABLE IF NOT EXISTS wearwatch.events (rid String, topic LowCardinality(String), type LowCardinality(String), key String, ts Nullable(DateTime64(6, 'UTC')), payload String) ENGINE = ReplacingMergeTree ORDER BY rid
    """  # noqa: E501
    columns = ", ".join(f"{c.name} {_type(c)}" for c in table.columns)
    partition = (
        " PARTITION BY toYYYYMM(ts)"
        if any(c.name == "ts" and not c.nullable for c in table.columns)
        else ""
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (rid String, {columns}) "
        f"ENGINE = ReplacingMergeTree{partition} ORDER BY rid"
    )


def _type(column: Column) -> str:
    if not column.nullable:
        return _TYPES[column.kind]
    if column.kind == "label":
        return "LowCardinality(Nullable(String))"
    return f"Nullable({_TYPES[column.kind]})"


def parse_url(url: str) -> dict[str, Any]:
    """The connection arguments of a ``clickhouse://`` or ``chdb:///`` URL; a ValueError names
    the URL (password redacted) and what is wrong.

    >>> args = parse_url("clickhouse://ana:s%40cret@ch.plant:8443/plant?secure=1")
    >>> args["host"], args["port"], args["username"], args["password"], args["database"]
    ('ch.plant', 8443, 'ana', 's@cret', 'plant')
    >>> parse_url("chdb:///var/ww/ch")
    {'path': 'var/ww/ch', 'database': 'wearwatch'}
    >>> parse_url("clickhouse://ana:pw@ch.plant:port/x")
    Traceback (most recent call last):
    ...
    ValueError: analytics='clickhouse://ana:***@ch.plant:port/x': the port is not a number
    """
    shown = redacted(url)

    def bad(why: str) -> ValueError:
        return ValueError(f"analytics={shown!r}: {why}")

    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme == "chdb" and url.startswith("chdb:///"):
        path = unquote(url.removeprefix("chdb:///").split("?", 1)[0])
        if not path:
            raise bad("no path; expected chdb:///path")
        args: dict[str, Any] = {"path": path}
        allowed = {"database"}
        database = options.get("database", DEFAULT_DATABASE)
    elif parts.scheme == "clickhouse":
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise bad("the port is not a number") from None
        if not parts.hostname:
            raise bad("no host; expected clickhouse://[user:password@]host:port/database")
        args = {
            "host": parts.hostname,
            "port": port,
            "username": unquote(parts.username or "default"),
            "password": unquote(parts.password or ""),
            "secure": options.get("secure", "0").lower() in ("1", "true", "yes"),
        }
        allowed = {"secure"}
        database = parts.path.strip("/") or DEFAULT_DATABASE
    else:
        raise bad("expected clickhouse://[user:password@]host:port/database or chdb:///path")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise bad(f"unknown option {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    if not _IDENTIFIER.fullmatch(database):
        raise bad(f"database {database!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return {**args, "database": database}


class ClickHouseStore:
    """The analytics tables in ``database`` through ``client`` (see :meth:`open`)."""

    def __init__(self, client: ClickHouseClient, database: str, url: str) -> None:
        self.client = client
        self.database = database
        self.url = redacted(url)
        for table in TABLES:
            self._run(table.name, client.command, ddl(table, database))

    @classmethod
    def open(cls, url: str) -> ClickHouseStore:
        """Connect to ``url``, create the database if missing, then the tables."""
        import clickhouse_connect

        args = parse_url(url)
        database = args.pop("database")
        shown = redacted(url)
        try:
            if "path" in args:
                Path(args["path"]).mkdir(parents=True, exist_ok=True)
                client = clickhouse_connect.get_client(
                    interface="chdb", path=args["path"], tz_mode="schema"
                )
            else:
                client = clickhouse_connect.get_client(**args, tz_mode="schema")
            client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        except (DriverError, OSError) as exc:  # unreachable, refused, chdb's path taken
            raise AnalyticsError(f"analytics {shown}: cannot connect: {_first_line(exc)}") from exc
        client.database = database  # unqualified names in query() resolve here
        return cls(client, database, url)

    def write_records(self, records: Sequence[Record]) -> int:
        """Insert each record's rows (one Arrow batch per table); returns how many records were
        new. A rid already stored is inserted again and collapses on merge."""
        batches = table_batches(records)
        if not batches:
            return 0
        rids = batches[EVENTS.name].column("rid").to_pylist()
        stored = self._scalar(
            EVENTS.name,
            f"SELECT count() FROM {self.database}.{EVENTS.name} FINAL "
            "WHERE rid IN {rids:Array(String)}",
            {"rids": rids},
        )
        for name, batch in batches.items():
            self._run(name, self.client.insert_arrow, name, batch, database=self.database)
        return len(rids) - stored

    def count(self, table: str) -> int:
        name = check_table(table)
        return self._scalar(name, f"SELECT count() FROM {self.database}.{name} FINAL")

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` with ``FINAL`` on every table (``{name:Type}`` parameters)."""
        result = self._run(
            "(query)", self.client.query, sql, parameters=params or None, settings={"final": 1}
        )
        return [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        self.client.close()

    def _scalar(self, table: str, sql: str, params: Mapping[str, Any] | None = None) -> int:
        result = self._run(table, self.client.query, sql, parameters=params)
        return int(result.result_rows[0][0])

    def _run(self, table: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``; the driver's errors name the store and the table."""
        try:
            return call(*args, **kwargs)
        except (DriverError, OSError) as exc:
            raise AnalyticsError(f"analytics {self.url} table {table}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
