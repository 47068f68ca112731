"""The API against its own OpenAPI document (schemathesis, in-process ASGI), on a platform over
real twin and worker output: no 5xx, every status code and content type documented, every
response body valid against its documented schema — and, with a wrong token, no change to any
topic of the log or to the model registry.

``GET /live`` is left out: an event stream never ends, so a schema-driven client would wait on
it forever (tests/test_api_live.py covers it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import api_platform as H  # tests/ is on sys.path (conftest.py)
from wearwatch.api.app import create_app
from wearwatch.api.platform import TRAINED_BY, Platform, PlatformConfig
from wearwatch.store.registry import ModelRegistry

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _platform(root: Path) -> Platform:
    """A private copy of the prepared platform with a model for every family the API serves
    (a missing one is a documented 503 — tested in test_api.py — which the no-5xx check here
    would count as a server error)."""
    data = H.prepared().copy(root)
    registry = ModelRegistry(data.registry_dir)
    for family in TRAINED_BY:
        if family not in registry.families():
            registry.register(family, data.rul, promote=True)
    platform = Platform(
        PlatformConfig(
            bus_url=f"sqlite:///{data.log_path}",
            data_dir=data.root,
            registry_dir=data.registry_dir,
            token=H.TOKEN,
            status_dir=data.root / "status",
        )
    )
    while platform.view.poll() > 0:
        pass
    return platform


@pytest.fixture(scope="module")
def platforms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Platform]]:
    made = {
        "token": _platform(tmp_path_factory.mktemp("token")),
        "wrong": _platform(tmp_path_factory.mktemp("wrong")),
    }
    yield made
    for platform in made.values():
        platform.close()


def _operations(platform: Platform) -> list[Any]:
    """Every documented operation but ``GET /live``."""
    app = create_app(platform, dashboard=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/live")
    return [result.ok() for result in schema.get_all_operations()]


def _state(platform: Platform) -> tuple[dict[str, dict[int, int]], dict[str, Any]]:
    """Every topic's end offsets and every model family's pointer."""
    log, registry = platform.log, platform.registry
    ends = {topic: log.end_offsets(topic) for topic in sorted(log.topics())}
    return ends, {family: registry.pointer(family) for family in registry.families()}


def _run(operation: Any, check: Any) -> None:
    """``check(case)`` on the operation's examples and generated cases (hypothesis)."""

    @EXAMPLES
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        check(case)

    run()


def test_responses_conform_to_the_document(platforms: dict[str, Platform]) -> None:
    operations = _operations(platforms["token"])
    assert len(operations) == 32
    auth = {"Authorization": f"Bearer {H.TOKEN}"}
    for operation in operations:
        _run(operation, lambda case: case.call_and_validate(headers=auth, checks=CHECKS))


def test_a_wrong_token_changes_nothing(platforms: dict[str, Platform]) -> None:
    platform = platforms["wrong"]
    before = _state(platform)
    secured = 0

    def check(case: Any) -> None:
        response = case.call_and_validate(headers={"Authorization": "Bearer wrong"}, checks=CHECKS)
        if case.operation.definition.raw.get("security"):
            assert response.status_code in (401, 422), (case.operation.label, response.text)
        assert _state(platform) == before, case.operation.label

    for operation in _operations(platform):
        secured += bool(operation.definition.raw.get("security"))
        _run(operation, check)
    assert secured == 15
