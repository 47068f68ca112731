"""The hot endpoints' fast path answers exactly as their routes do, and only when it can."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api_platform as H  # tests/ is on sys.path (conftest.py)
from wearwatch.api.app import create_app
from wearwatch.api.fastpath import ANOMALY, ANOMALY_LATEST, PREDICT_LATEST, HotPaths
from wearwatch.api.platform import Platform, PlatformConfig
from wearwatch.bus.base import read_all
from wearwatch.events import FeatureVector, decode_event


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Any, Any]]:
    """One platform; the app with the fast path and the app without it."""
    data = H.prepared().copy(tmp_path_factory.mktemp("fast"))
    config = PlatformConfig(
        bus_url=f"sqlite:///{data.log_path}",
        data_dir=data.root,
        registry_dir=data.registry_dir,
        token=H.TOKEN,
        status_dir=data.root / "status",
    )
    platform = Platform(config)
    while platform.view.poll() > 0:
        pass
    fast = TestClient(create_app(platform, dashboard=False))
    slow = TestClient(create_app(platform, dashboard=False, hot_paths=False))
    with fast, slow:
        yield platform, fast, slow
    platform.close()


def _bodies(platform: Platform) -> list[bytes]:
    """Real POST /anomaly bodies: the last window of each size per machine."""
    last: dict[tuple[str, float], bytes] = {}
    for record in read_all(platform.log, "fleet.features"):
        fv = decode_event(record.value, FeatureVector)
        last[(fv.machine_id, fv.window_s)] = record.value
    return [last[k] for k in sorted(last)]


def _same(fast: Any, slow: Any, method: str, path: str, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    a = fast.request(method, path, content=body, headers=headers)
    b = slow.request(method, path, content=body, headers=headers)
    assert (a.status_code, a.content, a.headers["content-type"]) == (
        b.status_code,
        b.content,
        b.headers["content-type"],
    ), (method, path)
    return a.status_code


def test_latest_lookups_answer_as_the_routes(clients) -> None:
    platform, fast, slow = clients
    machines = platform.view.machine_ids()
    assert len(machines) == H.MACHINES
    for machine in [*machines, "pump-999", "", "pump-001/x", "pump%2D001", "pump%2F001"]:
        for prefix in ("/predict/latest/", "/anomaly/latest/"):
            _same(fast, slow, "GET", prefix + machine)
    statuses = {_same(fast, slow, "GET", f"/anomaly/latest/{m}") for m in machines}
    assert statuses == {200}  # every prepared machine has a score: the hits were compared


def test_post_anomaly_answers_as_the_route(clients) -> None:
    platform, fast, slow = clients
    bodies = _bodies(platform)
    assert len(bodies) == 2 * H.MACHINES
    assert {_same(fast, slow, "POST", "/anomaly", b) for b in bodies} == {200}
    bad = [
        b"",
        b"{",
        b"[]",
        bodies[0].replace(b'"window_s"', b'"window"'),
        bodies[0].replace(b'"machine_id":"', b'"machine_id":7,"x":"'),
        b'{"type":"feature_vector","ts":"2026-01-01T00:00:00","machine_id":"m","window_s":5}',
    ]
    for body in bad:
        assert _same(fast, slow, "POST", "/anomaly", body) == 422


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=30), st.sampled_from(["/predict/latest/", "/anomaly/latest/"]))
def test_any_machine_id_answers_as_the_route(clients, machine: str, prefix: str) -> None:
    _, fast, slow = clients
    from urllib.parse import quote

    _same(fast, slow, "GET", prefix + quote(machine, safe=""))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_body_answers_as_the_route(clients, body: bytes) -> None:
    _, fast, slow = clients
    _same(fast, slow, "POST", "/anomaly", body)


class _Inner:
    """The app behind the fast path: records what reached it, with the body it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _call(app: Any, method: str, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks or [b""])
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], scope


def test_the_fast_path_answers_hits_itself_and_passes_the_rest_on_intact(clients) -> None:
    platform, _, _ = clients
    inner = _Inner()
    hot = HotPaths(inner, platform)
    machine = platform.view.machine_ids()[0]
    status, scope = _call(hot, "GET", f"/predict/latest/{machine}", [])
    assert (status, scope["route"], inner.calls) == (200, PREDICT_LATEST, [])
    status, scope = _call(hot, "GET", f"/anomaly/latest/{machine}", [])
    assert (status, scope["route"], inner.calls) == (200, ANOMALY_LATEST, [])
    body = _bodies(platform)[0]
    status, scope = _call(hot, "POST", "/anomaly", [body[:10], body[10:]])  # two chunks
    assert (status, scope["route"], inner.calls) == (200, ANOMALY, [])
    # Misses reach the app, the body replayed whole.
    assert _call(hot, "GET", "/predict/latest/nope", [])[0] == 299
    assert _call(hot, "POST", "/anomaly", [b'{"bad"', b": 1}"])[0] == 299
    assert _call(hot, "GET", "/machines", [])[0] == 299
    assert inner.calls == [
        ("/predict/latest/nope", b""),
        ("/anomaly", b'{"bad": 1}'),
        ("/machines", b""),
    ]
