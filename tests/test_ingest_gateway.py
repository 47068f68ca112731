"""The plant gateway: exactly once by id across crashes, acknowledged only after the write.

The property test plays a plant that redelivers every unacknowledged message after a crash
(MQTT QoS 1): whatever interleaving of messages, flushes and crashes — including a crash after
the write and before the acknowledgements — the log ends with every distinct valid reading
exactly once and every distinct bad payload as exactly one dead letter, and no message was
acknowledged before the records holding it were durable.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearwatch import topics
from wearwatch.bus.base import read_all
from wearwatch.bus.memory import MemoryLog
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.columnar import decode_columns
from wearwatch.events import DeadLetter, Reading, decode_event
from wearwatch.ingest.gateway import GatewayOptions, IngestGateway


class Crash(Exception):
    """The gateway process dies (here: inside an acknowledgement, after the write)."""


def logged(log: object) -> tuple[list[tuple[str, str, int]], list[tuple[str, bytes]]]:
    """Every reading id and every dead letter (origin, raw) in the log, duplicates kept."""
    ids: list[tuple[str, str, int]] = []
    for record in read_all(log, topics.READINGS.name):  # type: ignore[arg-type]
        columns, bad = decode_columns(record.value, Reading)
        assert bad == []
        ids += zip(
            columns.fields["machine_id"].tolist(),
            columns.fields["sensor"].tolist(),
            columns.ts_us.tolist(),
            strict=True,
        )
    letters = [
        (letter.source_topic, letter.raw)
        for letter in (
            decode_event(r.value, DeadLetter)
            for r in read_all(log, topics.DEAD_LETTERS.name)  # type: ignore[arg-type]
        )
    ]
    return ids, letters


# A message: (machine, sensor, second, value) — value None is a payload that is not a number.
messages = st.tuples(
    st.sampled_from(["p1", "p2", "fan-3"]),
    st.sampled_from(["vib", "temp"]),
    st.integers(0, 20),
    st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
)
steps = st.lists(
    st.one_of(
        messages.map(lambda m: ("msg", m)),
        st.just(("flush", None)),
        st.just(("crash", None)),
        st.just(("crash_after_write", None)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, max_batch=st.integers(1, 7))
def test_exactly_once_by_id_across_crashes(steps: list, max_batch: int) -> None:
    log = MemoryLog()
    options = GatewayOptions(max_batch=max_batch, linger_s=0.0, recover_records=10_000)
    gateway = IngestGateway(log, options)
    unacked: list[tuple] = []  # the plant's view: delivered, not acknowledged (in order)
    crash_in_ack = False
    ack_violations: list[tuple] = []

    def deliver(message: tuple) -> None:
        machine, sensor, second, value = message
        raw = b"NaN?" if value is None else repr(value).encode()
        origin = f"mqtt:plant/{machine}/{sensor}"

        def ack() -> None:
            nonlocal crash_in_ack
            if crash_in_ack:
                crash_in_ack = False
                raise Crash
            ids, letters = logged(log)
            durable = (
                (origin, raw) in letters
                if value is None
                else ((machine, sensor, second * 1_000_000) in ids)
            )
            if not durable:
                ack_violations.append(message)
            if message in unacked:
                unacked.remove(message)

        if value is None:
            gateway.reject(raw, origin, "value: not a number", "value", ack)
        else:
            fields = {"machine_id": machine, "sensor": sensor, "value": value, "ts": second}
            gateway.offer(fields, raw, origin, ack)

    def restart() -> None:
        nonlocal gateway
        gateway = IngestGateway(log, options)
        for message in list(unacked):  # QoS 1: everything unacknowledged comes again
            deliver_tracked(message, redelivery=True)

    def deliver_tracked(message: tuple, redelivery: bool = False) -> None:
        if not redelivery:
            unacked.append(message)
        deliver(message)
        if gateway.due():
            flush()

    def flush() -> None:
        with contextlib.suppress(Crash):  # the process is gone; the next step restarts it
            gateway.flush()

    for kind, message in steps:
        if kind == "msg":
            deliver_tracked(message)
        elif kind == "flush":
            flush()
        elif kind == "crash":
            restart()
        else:
            crash_in_ack = True
            flush()
            crash_in_ack = False
            restart()
    flush()
    restart()
    flush()

    ids, letters = logged(log)
    valid = {
        (m, s, sec * 1_000_000) for m, s, sec, v in (x for _, x in steps if x) if v is not None
    }
    invalid = {
        (f"mqtt:plant/{m}/{s}", b"NaN?") for m, s, _, v in (x for _, x in steps if x) if v is None
    }
    assert sorted(ids) == sorted(valid)  # each distinct valid reading exactly once
    assert sorted(letters) == sorted(invalid)  # each distinct bad payload exactly once
    assert unacked == []  # everything was acknowledged in the end
    assert ack_violations == []  # and never before it was durable


def test_bad_fields_become_dead_letters_naming_the_field(tmp_path) -> None:
    log = SqliteLog(tmp_path / "log.db")
    gateway = IngestGateway(log, GatewayOptions(linger_s=0.0))
    cases = {
        b"a": ({"machine_id": "p1", "sensor": "vib", "value": math.inf, "ts": 1.0}, "value"),
        b"b": ({"machine_id": "", "sensor": "vib", "value": 1.0, "ts": 1.0}, "machine_id"),
        b"c": ({"machine_id": "p1", "sensor": "vib", "value": 1.0}, "ts"),
        b"d": ({"machine_id": "p1", "sensor": "vib", "value": 1.0, "ts": "yesterday"}, "ts"),
        b"e": ({"machine_id": "p1", "sensor": "vib", "value": 1.0, "ts": 1e12}, "ts"),
        b"f": ({"machine_id": "p1", "sensor": "vib", "value": True, "ts": 1.0}, "value"),
    }
    for raw, (fields, _) in cases.items():
        assert gateway.offer(fields, raw, "mqtt:plant/p1/vib") == "rejected"
    gateway.flush()
    letters = [decode_event(r.value, DeadLetter) for r in read_all(log, "dead_letters")]
    assert {letter.raw: letter.field.removeprefix("$.") for letter in letters} == {
        raw: field for raw, (_, field) in cases.items()
    }
    assert all(letter.source_topic == "mqtt:plant/p1/vib" for letter in letters)
    assert read_all(log, topics.READINGS.name) == []


def test_batches_are_written_when_full_or_lingered() -> None:
    now = [0.0]
    gateway = IngestGateway(
        MemoryLog(), GatewayOptions(max_batch=3, linger_s=0.5), clock=lambda: now[0]
    )
    reading = {"machine_id": "p1", "sensor": "vib", "value": 1.0}
    gateway.offer({**reading, "ts": 0}, b"", "o")
    now[0] = 0.4
    assert (gateway.due(), gateway.time_to_due()) == (False, pytest.approx(0.1))
    now[0] = 0.5
    assert gateway.due()
    gateway.flush()
    for second in (1, 2):
        gateway.offer({**reading, "ts": second}, b"", "o")
    assert not gateway.due()
    gateway.offer({**reading, "ts": 3}, b"", "o")
    assert gateway.due() and gateway.pending == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch", 0), ("linger_s", -1.0), ("linger_s", math.nan), ("recover_records", -1)],
)
def test_options_name_the_bad_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GatewayOptions(**{field: value})
