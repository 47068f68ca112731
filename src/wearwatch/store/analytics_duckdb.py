"""The analytics store in DuckDB (embedded, the default): one file, ``rid`` as primary key.

A second insert of a rid is ignored (``INSERT OR IGNORE``), so a replay adds nothing and every
read is exact as it stands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from wearwatch.bus.base import Record
from wearwatch.store.analytics import EVENTS, TABLES, Table, check_table, table_batches

_TYPES = {
    "text": "VARCHAR",
    "label": "VARCHAR",
    "json": "JSON",
    "float": "DOUBLE",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "time": "TIMESTAMPTZ",
}


def ddl(table: Table) -> str:
    """The ``CREATE TABLE`` statement of ``table``.

    >>> from wearwatch.store.analytics import EVENTS
    >>> print(ddl(EVENTS))
    CREATE TABLE IF NOT EXISTS events (rid VARCHAR PRIMARY KEY, topic VARCHAR NOT NULL, type VARCHAR NOT NULL, key VARCHAR NOT NULL, ts TIMESTAMPTZ, payload JSON NOT NULL)
    """  # noqa: E501
    columns = ", ".join(
        f"{c.name} {_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
    )
    return f"CREATE TABLE IF NOT EXISTS {table.name} (rid VARCHAR PRIMARY KEY, {columns})"


class DuckDBStore:
    """A DuckDB file; ``DuckDBStore(":memory:")`` for tests."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.url = f"duckdb:///{path}"
        self.conn = duckdb.connect(str(path))
        for table in TABLES:
            self.conn.execute(ddl(table))

    def write_records(self, records: Sequence[Record]) -> int:
        """Insert each record's rows once per rid; returns how many records were new."""
        before = self.count(EVENTS.name)
        for name, batch in table_batches(records).items():
            # Bulk inserts through Arrow: DuckDB's executemany goes row by row.
            self.conn.register("_incoming", batch)
            try:
                names = ", ".join(batch.column_names)
                self.conn.execute(
                    f"INSERT OR IGNORE INTO {name} ({names}) SELECT {names} FROM _incoming"
                )
            finally:
                self.conn.unregister("_incoming")
        return self.count(EVENTS.name) - before

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {check_table(table)}").fetchall()[0][0])

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        values = params if isinstance(params, Mapping) else list(params)
        return self.conn.execute(sql, values).fetchall()

    def close(self) -> None:
        self.conn.close()
