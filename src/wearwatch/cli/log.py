"""``wearwatch log``: look into the log — topics, recent records, dead letters, retention."""

from __future__ import annotations

import json

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from wearwatch.cli.errors import describe, fail

app = typer.Typer(help="Inspect the log: topics, records, dead letters.", no_args_is_help=True)

#: ``tail`` and ``dead-letters`` hold the records in memory to order them: a bound keeps that
#: (and the ints handed to the log) sane.
MAX_SHOWN = 1_000_000
#: Longest raw-bytes repr (in characters) shown for a record that is not displayable JSON.
RAW_CHARS = 400


def _open(bus: str | None):
    from wearwatch.config import get_settings
    from wearwatch.wiring import open_configured_log

    try:
        return open_configured_log(get_settings(), bus)
    except ValueError as exc:
        fail(describe(exc))


def _raw(value: bytes, limit: int = RAW_CHARS) -> str:
    """A bounded repr of raw bytes: shows anything (invalid UTF-8, binary) on one line.

    >>> print(_raw(b"ok\\xff"))
    b'ok\\xff'
    >>> print(_raw(b"x" * 10, limit=6))
    b'xxxx... (10 bytes)
    """
    text = repr(value[:limit])  # each byte is at least one character of its repr
    if len(value) <= limit and len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(value):,} bytes)"


def _json_line(fields: dict, value: bytes) -> str:
    """``fields`` plus the record's JSON ``value``; any record that cannot be decoded or shown
    as JSON (invalid UTF-8, nesting too deep, not JSON) gets ``raw`` instead."""
    try:
        return json.dumps({**fields, "value": msgspec.json.decode(value)})
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return json.dumps({**fields, "raw": _raw(value)})


def _last(log: object, topic: str, n: int) -> list:
    """The last ``n`` records of ``topic`` across partitions, oldest first (by append time)."""
    from wearwatch.bus.base import Record

    try:
        ends = log.end_offsets(topic)  # type: ignore[attr-defined]
    except KeyError:
        fail(f"topic {topic!r} does not exist (see `wearwatch log topics`)")
    records: list[Record] = []
    for partition, end in ends.items():
        records.extend(log.read(topic, partition, max(0, end - n), n))  # type: ignore[attr-defined]
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records[-n:]


@app.command("topics")
def topics(bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)")) -> None:
    """Every topic with its partitions and record count."""
    log = _open(bus)
    table = Table(title=f"topics on {log.url}")
    for col in ("topic", "partitions", "records", "end offsets"):
        table.add_column(col, justify="left" if col == "topic" else "right")
    for name, partitions in sorted(log.topics().items()):
        ends = log.end_offsets(name)
        table.add_row(
            name,
            str(partitions),
            f"{sum(ends.values()):,}",
            " ".join(str(ends[p]) for p in sorted(ends)),
        )
    Console().print(table)
    log.close()


@app.command("tail")
def tail(
    topic: str = typer.Argument(..., help="topic to read"),
    n: int = typer.Option(10, "-n", min=1, max=MAX_SHOWN, help="how many records"),
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
) -> None:
    """The last N records of TOPIC as JSON lines (with partition, offset and id).

    A record that is not displayable JSON shows ``raw``, a bounded repr of its bytes.
    """
    log = _open(bus)
    for record in _last(log, topic, n):
        fields = {"partition": record.partition, "offset": record.offset, "rid": record.rid}
        typer.echo(_json_line(fields, record.value))
    log.close()


@app.command("dead-letters")
def dead_letters(
    n: int = typer.Option(20, "-n", min=1, max=MAX_SHOWN, help="how many"),
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
) -> None:
    """The most recent dead letters: where each came from, why, and its raw bytes."""
    from wearwatch.events import DeadLetter
    from wearwatch.topics import DEAD_LETTERS

    log = _open(bus)
    DEAD_LETTERS.create(log)
    table = Table(title="dead letters (newest last)")
    for col in ("source", "field", "reason", "raw"):
        table.add_column(col, overflow="fold")
    for record in _last(log, DEAD_LETTERS.name, n):
        try:
            letter = msgspec.json.decode(record.value, type=DeadLetter)
        except (msgspec.MsgspecError, ValueError, RecursionError):
            # Anyone may write to the topic: show what is there instead of stopping.
            where = f"{DEAD_LETTERS.name}/{record.partition}@{record.offset}"
            table.add_row(where, "", "not a dead letter", _raw(record.value, limit=120))
            continue
        raw = letter.raw.decode(errors="replace")
        table.add_row(
            f"{letter.source_topic}/{letter.partition}@{letter.offset}",
            letter.field,
            letter.reason,
            raw if len(raw) <= 120 else raw[:117] + "...",
        )
    Console().print(table)
    log.close()


@app.command("retention")
def retention(bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)")) -> None:
    """Delete records older than WEARWATCH_RETENTION_S now (workers also do it every minute)."""
    log = _open(bus)
    deleted = log.apply_retention()
    typer.echo(f"deleted {deleted:,} records past retention")
    log.close()
