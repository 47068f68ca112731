"""Checkpoints are unpickled only after their tag verifies; with a key, only signed ones; and
whatever a writer without the key publishes is refused or skipped over, never run."""

from __future__ import annotations

import hashlib
import itertools
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearwatch.bus.base import OutRecord
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.runtime.checkpoint import (
    CheckpointSeal,
    CorruptCheckpoint,
    KafkaCheckpointStore,
    SnapshotBinding,
    dump_state,
    load_state,
)
from wearwatch.runtime.operator import PartitionState

UNPICKLED: list[str] = []
KEY = b"plant-secret-0123456789abcdef"


class Trap:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (UNPICKLED.append, ("trap ran",))


def _at(position: int) -> SnapshotBinding:
    return SnapshotBinding("g", "readings", 0, position)


def test_a_tampered_snapshot_is_refused_before_unpickling() -> None:
    seal = CheckpointSeal(KEY)
    blob, tag = dump_state(PartitionState(position=7), _at(7), seal)
    assert load_state(blob, tag, _at(7), seal).position == 7
    evil = pickle.dumps(Trap())
    with pytest.raises(CorruptCheckpoint, match="does not verify"):
        load_state(evil, tag, _at(7), seal)
    assert UNPICKLED == []


def test_with_a_key_a_forged_plain_digest_is_refused() -> None:
    seal = CheckpointSeal(KEY)
    evil = pickle.dumps(Trap())
    # What a forger without the key can make: the unsigned scheme's tag, or an unkeyed sha256
    # in the signed scheme's clothes.
    unsigned = CheckpointSeal(None).tag(_at(0), evil)
    with pytest.raises(CorruptCheckpoint, match="not signed"):
        load_state(evil, unsigned, _at(0), seal)
    plain = "hmac-sha256:" + hashlib.sha256(evil).hexdigest()
    with pytest.raises(CorruptCheckpoint, match="does not verify"):
        load_state(evil, plain, _at(0), seal)
    assert UNPICKLED == []
    blob, tag = dump_state(PartitionState(position=3), _at(3), seal)
    assert tag.startswith("hmac-sha256:")
    assert load_state(blob, tag, _at(3), seal).position == 3


def test_unsigned_mode_checks_integrity_and_never_mixes_with_signed() -> None:
    unsigned, signed = CheckpointSeal(None), CheckpointSeal(KEY)
    blob, tag = dump_state(PartitionState(position=5), _at(5), unsigned)
    assert tag.startswith("sha256:") and load_state(blob, tag, _at(5), unsigned).position == 5
    with pytest.raises(CorruptCheckpoint, match="does not verify"):  # moved, even unsigned
        load_state(blob, tag, SnapshotBinding("g", "readings", 1, 5), unsigned)
    with pytest.raises(CorruptCheckpoint, match="not signed"):
        load_state(blob, tag, _at(5), signed)
    blob, tag = dump_state(PartitionState(position=5), _at(5), signed)
    with pytest.raises(CorruptCheckpoint, match="no checkpoint key"):
        load_state(blob, tag, _at(5), unsigned)


# ------------------------------------------------------------------ arbitrary snapshot values


def _genuine(store: KafkaCheckpointStore, position: int) -> bytes:
    binding = SnapshotBinding(store.group, "readings", 0, position)
    blob, tag = dump_state(PartitionState(position=position), binding, store.seal)
    return KafkaCheckpointStore.envelope(tag, position, blob)


def _junk(draw: st.DrawFn, genuine: list[bytes]) -> bytes:
    """What a writer of the checkpoints topic without the key can publish: random bytes, a
    genuine snapshot of this group with one byte changed, or a trap with a made-up tag."""
    kind = draw(st.sampled_from(["bytes", "flip", "trap"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "trap":
        tag = draw(st.sampled_from(["hmac-sha256:", "sha256:", ""])) + draw(
            st.text("0123456789abcdef", min_size=0, max_size=64)
        )
        position = draw(st.integers(min_value=0, max_value=10**6))
        return KafkaCheckpointStore.envelope(tag, position, pickle.dumps(Trap()))
    value = bytearray(draw(st.sampled_from(genuine)))
    index = draw(st.integers(min_value=0, max_value=len(value) - 1))
    value[index] ^= draw(st.integers(min_value=1, max_value=255))
    return bytes(value)


GROUPS = itertools.count()


@pytest.fixture(scope="module")
def snapshot_log(tmp_path_factory: pytest.TempPathFactory) -> SqliteLog:
    """The Kafka store's logic on a log any backend provides (here the embedded one)."""
    return SqliteLog(tmp_path_factory.mktemp("kafka-store") / "log.db")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), with_genuine=st.booleans())
def test_any_published_value_is_refused_or_falls_back_never_run(
    snapshot_log: SqliteLog, data: st.DataObject, with_genuine: bool
) -> None:
    store = KafkaCheckpointStore(snapshot_log, f"g{next(GROUPS)}", KEY)
    genuine = [_genuine(store, p) for p in (0, 17, 400)]
    junk = [data.draw(st.composite(_junk)(genuine)) for _ in range(data.draw(st.integers(1, 4)))]
    values = ([_genuine(store, 42)] if with_genuine else []) + junk
    snapshot_log.produce(OutRecord(store.topic, b"readings/0", v, "", 0) for v in values)
    if with_genuine:
        assert store.load("readings", [0])[0].position == 42
    else:
        with pytest.raises(CorruptCheckpoint, match="no older snapshot verifies"):
            store.load("readings", [0])
    assert UNPICKLED == []
