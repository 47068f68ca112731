"""Fuzzing the worker with mutated readings (issue 7, "Done when"): structure-aware JSON
mutations of valid Reading events plus random bytes, as single and batch records, 10,000 records
in all. A brute-force reference, written independently of the decoder (stdlib ``json`` for
structure, labels known by construction for the contract, a few lines of watermark logic),
predicts every outcome; the worker must match it exactly and never stop."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from random import Random
from unittest import mock

import msgspec
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import wearwatch.bus.sqlite as sqlite_bus
from wearwatch.bus.base import OutRecord, read_all
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import DeadLetter, Reading, ReadingTotals
from wearwatch.pipelines.reading_totals import READINGS_TOPIC, TOTALS_TOPIC, ReadingTotalsOperator
from wearwatch.runtime.operator import DEAD_LETTER_TOPIC, Context
from wearwatch.runtime.worker import Worker, WorkerOptions

T0 = datetime(2026, 1, 1, tzinfo=UTC)
APPENDED = datetime(2026, 1, 10, tzinfo=UTC)  # every record's (patched) log append time
MAX_FUTURE_S = 86400.0
DELAY_S = 5.0
RECORDS_PER_EXAMPLE = 100
EXAMPLES = 100  # 10,000 records in all
OPTIONS = WorkerOptions(
    exit_when_idle=True,
    poll_timeout_s=0.0,
    poll_max_records=37,
    watermark_delay_s=DELAY_S,
    max_future_s=MAX_FUTURE_S,
)
#: The latest event time the guard accepts: never late, it fires every pending timer.
FLUSH = (
    b'{"type":"reading","ts":"2026-01-11T00:00:00Z","v":1,"machine_id":"flush",'
    b'"sensor":"s0","value":0.0,"unit":""}'
)


class FrozenWallClock:
    """The ``time`` module with ``time()`` frozen (monotonic clocks and sleep still run)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


# --- generating: a reading as key/value literals, then mutations --------------------------


@dataclass(frozen=True)
class Valid:
    """What a valid item is, by construction: its event time, key and value."""

    ts: float
    key: str
    value: float


@dataclass(frozen=True)
class Item:
    raw: bytes
    valid: Valid | None  # None: the contract refuses it (whatever its JSON structure)


def _string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def _timestamp(moment: datetime, style: int) -> bytes:
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").encode()
    local = moment.astimezone(timezone(timedelta(hours=-3)))  # another offset, same instant
    return local.strftime("%Y-%m-%dT%H:%M:%S.%f-03:00").encode()


BAD_TIMES = [
    b"2026-01-01T00:00:00",  # naive
    b"yesterday",
    b"",
    b"0001-01-01T00:00:00+14:00",
    b"9999-12-31T23:59:59-14:00",
    b"9999-12-31T23:59:59Z",
    b"1969-12-31T23:59:59Z",
]
BAD_VALUES = [b'"hot"', b"true", b"null", b"[1]", b"{}", b"1e999", b"-1e999", b"2e300"]
MALFORMED_VALUES = [b"NaN", b"Infinity", b"-Infinity", b".5", b"+1", b"1.", b"0x10"]


#: The reading's keys; a key maps to True if the event may lack it.
KEYS = {
    "type": True,
    "ts": False,
    "v": True,
    "machine_id": False,
    "sensor": False,
    "value": False,
    "unit": True,
}
#: Which keys accept the stand-in literals a duplicate key may carry.
ACCEPTS = {b"1": {"v", "value"}, b'"x"': {"machine_id", "sensor", "unit"}}
MUTATIONS = [
    "drop",
    "unknown",
    "duplicate",
    "escaped-duplicate",
    "wrong-value",
    "wrong-type-tag",
    "wrong-version",
    "bad-id",
    "deep",
    "bad-utf8",
    "malformed-value",
    "truncate",
    "stray-byte",
]


@dataclass
class Field:
    key: bytes  # as written between the quotes (may be escaped)
    name: str  # the key it decodes to
    literal: bytes
    ok: bool  # the literal is a valid value for ``name``


def reading(rng: Random, index: float) -> Item:
    """A reading, then structure-aware mutations; valid or not is judged from the result."""
    second = index + rng.choice([0.0, 0.25, 0.5])
    ts_kind = rng.choice(["ok"] * 12 + ["late", "future", "far-future", "bad"])
    if ts_kind == "bad":
        ts_literal, ts = b'"' + rng.choice(BAD_TIMES) + b'"', 0.0
    else:
        moment = T0 + timedelta(seconds=second)
        if ts_kind == "late":
            moment -= timedelta(seconds=60)
        elif ts_kind == "future":
            moment = APPENDED + timedelta(seconds=MAX_FUTURE_S + 1)
        elif ts_kind == "far-future":
            moment = datetime(2150, 1, 1, tzinfo=UTC)
        ts = moment.timestamp()
        ts_literal = b'"' + _timestamp(moment, rng.randint(0, 2)) + b'"'
    machine = rng.choice(["m1", "m2", "m3"])
    sensor = rng.choice(["s0", "s1"])
    number = rng.randint(-50, 50) / 2
    value_literal = rng.choice([repr(number), f"{number:g}", f"{number * 10:g}e-1"])
    unit = rng.choice([b'""', b'"mm/s"', _string("°C"), b'"\\u00b0C"'])
    fields = [
        Field(b"type", "type", b'"reading"', True),
        Field(b"ts", "ts", ts_literal, ts_kind != "bad"),
        Field(b"v", "v", b"1", True),
        Field(b"machine_id", "machine_id", _string(machine), True),
        Field(b"sensor", "sensor", _string(sensor), True),
        Field(b"value", "value", value_literal.encode(), True),
        Field(b"unit", "unit", unit, True),
    ]
    fields = [f for f in fields if not (KEYS[f.name] and rng.randint(0, 9) == 0)]
    if rng.random() < 0.5:
        rng.shuffle(fields)
    damage: set[str] = set()
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        mutation = rng.choice(MUTATIONS)
        if mutation == "drop" and fields:
            fields.remove(rng.choice(fields))
        elif mutation == "unknown":
            where = rng.randint(0, len(fields))
            fields.insert(where, Field(b"colour", "colour", b'"red"', False))
        elif mutation in ("duplicate", "escaped-duplicate") and fields:
            twin = rng.choice(fields)
            literal = rng.choice([twin.literal, b"1", b'"x"'])
            key = twin.key
            if mutation == "escaped-duplicate":  # the same key, its first letter escaped
                key = b"\\u%04x" % twin.name.encode()[0] + twin.name.encode()[1:]
            where = rng.randint(0, len(fields))
            ok = twin.ok if literal == twin.literal else twin.name in ACCEPTS[literal]
            fields.insert(where, Field(key, twin.name, literal, ok))
        elif mutation == "wrong-value":
            _set(fields, "value", rng.choice(BAD_VALUES))
        elif mutation == "wrong-type-tag":
            _set(fields, "type", rng.choice([b'"pass_actual"', b"1"]))
        elif mutation == "wrong-version":
            _set(fields, "v", rng.choice([b"2", b'"1"', b"true"]))
        elif mutation == "bad-id":
            bad_id = rng.choice([b'""', _string("x" * 201), b"7", b"null"])
            _set(fields, rng.choice(["machine_id", "sensor"]), bad_id)
        elif mutation == "deep":
            depth = rng.choice([2, 30, 62, 63, 64, 65, 100, 200])
            deep = rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
            name = rng.choice(["value", "machine_id", "unit", "colour"])
            fields.append(Field(name.encode(), name, deep, False))
        elif mutation == "bad-utf8":
            strings = [f for f in fields if f.literal[:1] == b'"']
            if strings:
                victim = rng.choice(strings)
                bad = rng.choice([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"])
                victim.literal = victim.literal[:1] + bad + victim.literal[1:]
                victim.ok = False
        elif mutation == "malformed-value":
            _set(fields, "value", rng.choice(MALFORMED_VALUES))
        elif mutation in ("truncate", "stray-byte"):
            damage.add(mutation)
    colon, comma = rng.choice([(b":", b","), (b": ", b", "), (b" :\n", b" ,\t")])
    raw = b"{" + comma.join(b'"' + f.key + b'"' + colon + f.literal for f in fields) + b"}"
    if "truncate" in damage:
        raw = raw[: rng.randint(1, len(raw) - 1)]
    if "stray-byte" in damage:
        spot = rng.choice([1, len(raw) - 1])
        raw = raw[:spot] + rng.choice([b"#", b"\x00", b"'", b"}"]) + raw[spot:]
    names = [f.name for f in fields]
    valid = (
        not damage
        and all(f.ok for f in fields)
        and len(set(names)) == len(names)  # no duplicate key
        and set(names) <= set(KEYS)
        and all(name in names for name, optional in KEYS.items() if not optional)
    )
    if not valid:
        return Item(raw, None)
    # A duplicate's stand-in may have replaced a dropped original: read what is left.
    final = {f.name: json.loads(f.literal) for f in fields}
    return Item(raw, Valid(ts, f"{final['machine_id']}/{final['sensor']}", final["value"]))


def _set(fields: list[Field], name: str, literal: bytes) -> None:
    """Give ``name`` a wrong ``literal`` (adding the key if the reading lacks it)."""
    for f in fields:
        if f.name == name:
            f.literal, f.ok = literal, False
            return
    fields.append(Field(name.encode(), name, literal, False))


def record(rng: Random, index: int) -> tuple[bytes, list[Item]]:
    """One log record: a single item, a batch of items, an empty batch or random bytes."""
    shape = rng.choice(["single"] * 6 + ["batch"] * 3 + ["random", "empty"])
    if shape == "random":
        noise = rng.randbytes(rng.randint(0, 40))
        return noise, [Item(noise, None)]
    if shape == "empty":
        return b"[]", []
    if shape == "single":
        item = reading(rng, index)
        return item.raw, [item]
    items: list[Item] = []
    for n in range(rng.randint(1, 6)):
        if rng.randint(0, 9) == 0:
            noise = rng.randbytes(rng.randint(1, 12))
            items.append(Item(noise, None))
        else:
            items.append(reading(rng, index + n / 8))
    separator = rng.choice([b",", b", ", b"\n,\n"])
    return b"[" + separator.join(item.raw for item in items) + b"]", items


# --- the reference ------------------------------------------------------------------------


_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def reference_units(record: bytes, items: list[Item]) -> list[tuple[bytes, Valid | None]]:
    """The units a record holds: its items if it is a well-formed non-empty JSON array,
    else the record itself (refused whole). Structure is judged by the stdlib's parser."""
    if record[:1] != b"[" or _LONE_SURROGATE.search(record):
        labels = {item.raw: item.valid for item in items}
        return [(record, labels.get(record))]
    text = record.decode("latin-1")  # one char per byte: offsets are byte offsets
    # Pairs, not dicts: a duplicate key must not hide a deep value from the depth count.
    decoder = json.JSONDecoder(parse_constant=_refuse, object_pairs_hook=Pairs)
    spans: list[tuple[int, int]] = []
    try:
        if _depth(decoder.decode(text)) > 64:
            return [(record, None)]  # too deep to take apart: refused whole
        index = _skip_space(text, 1)
        while index < len(text) and text[index] != "]":
            _, end = decoder.raw_decode(text, index)
            spans.append((index, end))
            index = _skip_space(text, end)
            if text[index] == ",":
                index = _skip_space(text, index + 1)
                if text[index] == "]":
                    raise ValueError("trailing comma")
            elif text[index] != "]":
                raise ValueError("no comma")
        if index >= len(text) or _skip_space(text, index + 1) != len(text):
            raise ValueError("trailing data")
    except (ValueError, IndexError):
        return [(record, None)]
    if not spans:
        return [(record, None)]  # an empty batch
    labels = {item.raw: item.valid for item in items}
    # A random-bytes item may hold several values ("1,2"): unknown pieces are never valid.
    return [(record[start:end], labels.get(record[start:end])) for start, end in spans]


class Pairs(list[tuple[str, object]]):
    """A JSON object as its key/value pairs."""


def _depth(node: object) -> int:
    if isinstance(node, Pairs):
        return 1 + max((_depth(value) for _, value in node), default=0)
    if isinstance(node, list):
        return 1 + max(map(_depth, node), default=0)
    return 0


def _refuse(constant: str) -> None:
    raise ValueError(constant)


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\n\r":
        index += 1
    return index


@dataclass
class Expected:
    counters: Counter[str]
    letters: Counter[bytes]
    totals: dict[str, tuple[int, float]]


def reference_run(units: list[tuple[bytes, Valid | None]]) -> Expected:
    """What the worker must do, by brute force: watermark, lateness, the future guard."""
    counters: Counter[str] = Counter()
    letters: Counter[bytes] = Counter()
    totals: dict[str, tuple[int, float]] = {}
    watermark = float("-inf")
    horizon = APPENDED.timestamp() + MAX_FUTURE_S
    for raw, valid in units:
        counters["in"] += 1
        if valid is None:
            counters["invalid"] += 1
            letters[raw] += 1
        elif valid.ts > horizon:
            counters["future"] += 1
            letters[raw] += 1
        elif valid.ts < watermark:
            counters["late"] += 1
            letters[raw] += 1
        else:
            watermark = max(watermark, valid.ts - DELAY_S)
            if valid.value == Fragile.UNLUCKY:
                counters["failed"] += 1
                letters[raw] += 1
                continue
            counters["processed"] += 1
            if valid.key != "flush/s0":
                count, total = totals.get(valid.key, (0, 0.0))
                totals[valid.key] = (count + 1, total + valid.value)
    counters["dead_lettered"] = sum(letters.values())
    return Expected(counters, letters, totals)


class Fragile(ReadingTotalsOperator):
    """Fails on one value: valid events the operator cannot handle are in the mix too."""

    UNLUCKY = 13.5

    def process(self, event: Reading, key: str, ts: float, ctx: Context) -> None:
        if event.value == self.UNLUCKY:
            raise ArithmeticError("unlucky")
        super().process(event, key, ts, ctx)


# --- the test -----------------------------------------------------------------------------


@st.composite
def logs(draw: st.DrawFn) -> list[tuple[bytes, list[Item]]]:
    # Hypothesis picks (and, derandomized, fixes) the seed; the mutations draw from a plain
    # Random, which is ~20 times cheaper than drawing each choice through Hypothesis.
    rng = draw(st.randoms(use_true_random=True))
    return [record(rng, 10 * i) for i in range(RECORDS_PER_EXAMPLE)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # Shrinking 100-record logs takes minutes; the assertions below name the culprit instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(logs())
def test_fuzzed_records_never_stop_the_worker_and_every_item_is_accounted_for(
    generated: list[tuple[bytes, list[Item]]],
) -> None:
    values = [record for record, _ in generated] + [FLUSH]
    units = [unit for record, items in generated for unit in reference_units(record, items)]
    flush = Valid(datetime(2026, 1, 11, tzinfo=UTC).timestamp(), "flush/s0", 0.0)
    expected = reference_run([*units, (FLUSH, flush)])
    with tempfile.TemporaryDirectory(prefix="wearwatch-fuzz-") as tmp:
        log = SqliteLog(Path(tmp) / "log.db")
        log.create_topic(READINGS_TOPIC, 1)
        with mock.patch.object(sqlite_bus, "time", FrozenWallClock(APPENDED.timestamp())):
            log.produce([OutRecord(READINGS_TOPIC, b"k", value) for value in values])
        worker = Worker(log, Fragile(ttl_s=1.0), "fuzz", OPTIONS)
        counters = worker.run(install_signals=False)  # raising here is the failure
        # It went through every record and committed the position past it.
        assert log.committed("fuzz", [(READINGS_TOPIC, 0)]) == {(READINGS_TOPIC, 0): len(values)}
        letters = [
            msgspec.json.decode(r.value, type=DeadLetter) for r in read_all(log, DEAD_LETTER_TOPIC)
        ]
        emitted: dict[str, tuple[int, float]] = {}
        for record in read_all(log, TOTALS_TOPIC):
            total = msgspec.json.decode(record.value, type=ReadingTotals)
            count, value = emitted.get(total.key, (0, 0.0))
            emitted[total.key] = (count + total.count, value + total.total)
        log.close()
    # Each dead letter holds the original bytes of its item (or of its whole record).
    lettered = Counter(letter.raw for letter in letters)
    missing, extra = expected.letters - lettered, lettered - expected.letters
    assert not missing and not extra, (sorted(missing)[:3], sorted(extra)[:3])
    names = ("in", "processed", "invalid", "late", "future", "failed", "dead_lettered")
    got = {name: counters[name] for name in names}
    assert got == {name: expected.counters[name] for name in names}
    # The identity, with every named counter exact.
    outcomes = ("processed", "invalid", "late", "future", "failed")
    assert got["in"] == sum(got[name] for name in outcomes)
    assert got["dead_lettered"] == len(letters)
    reasons = Counter(letter.reason.split(":")[0] for letter in letters)
    assert (reasons["future"], reasons["late"], reasons["processing failed"]) == (
        got["future"],
        got["late"],
        got["failed"],
    )
    # Valid events reach the operator: per-key totals equal the brute-force ones.
    assert emitted == expected.totals
