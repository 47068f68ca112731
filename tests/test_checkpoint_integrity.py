"""Checkpoints are unpickled only after their digest matches; with a key, only signed ones."""

from __future__ import annotations

import pickle

import pytest

from wearwatch.config import get_settings
from wearwatch.runtime.checkpoint import CorruptCheckpoint, dump_state, load_state
from wearwatch.runtime.operator import PartitionState

UNPICKLED: list[str] = []


class Trap:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (UNPICKLED.append, ("trap ran",))


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARWATCH_CHECKPOINT_KEY", "plant-secret")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_tampered_snapshot_is_refused_before_unpickling() -> None:
    state = PartitionState(position=7)
    blob, digest = dump_state(state)
    assert load_state(blob, digest, "here").position == 7
    evil = pickle.dumps(Trap())
    with pytest.raises(CorruptCheckpoint, match="does not match"):
        load_state(evil, digest, "here")
    assert UNPICKLED == []


def test_with_a_key_a_forged_plain_digest_is_refused(key: None) -> None:
    import hashlib

    evil = pickle.dumps(Trap())
    with pytest.raises(CorruptCheckpoint):
        load_state(evil, hashlib.sha256(evil).hexdigest(), "kafka")  # what a forger can make
    assert UNPICKLED == []
    blob, digest = dump_state(PartitionState(position=3))
    assert digest.startswith("hmac-")
    assert load_state(blob, digest, "kafka").position == 3
