"""``wearwatch serve`` as a process (loopback by default, /health, SIGTERM, the token never in
its output) and ``GET /live`` over a real server: alarms written to the log arrive as
server-sent events, and a client that disconnects leaves no subscriber behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn

from wearwatch.api.app import create_app
from wearwatch.api.auth import TOKEN_FILE
from wearwatch.api.live import Feed, stream
from wearwatch.api.platform import Platform, PlatformConfig
from wearwatch.bus.base import OutRecord
from wearwatch.bus.sqlite import SqliteLog
from wearwatch.events import Alarm, MachineHealth, encode, utc
from wearwatch.topics import ALARMS, HEALTH

WAIT_S = 60.0  # generous: the machine is shared


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _wait_for(condition, timeout_s: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5.0, **kwargs)
    except httpx.TransportError:
        return None


def test_serve_binds_loopback_answers_health_keeps_the_token_out_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "WEARWATCH_DATA_DIR": str(tmp_path),
        "WEARWATCH_API_PORT": str(port),
        "WEARWATCH_API_TOKEN": "",
    }
    env.pop("WEARWATCH_API_HOST", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wearwatch", "serve", "--headless"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        r = _wait_for(lambda: _get(f"{base}/health"), what="GET /health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.json()["log"]["reachable"] is True
        assert _listening_addresses(port) == {"127.0.0.1"}
        token = (tmp_path / TOKEN_FILE).read_text()
        assert oct((tmp_path / TOKEN_FILE).stat().st_mode & 0o777) == "0o600"
        auth = {"Authorization": f"Bearer {token}"}
        # With the token: in the header, in a query string (as the dashboard's URL has it),
        # a refused one, an accepted one.
        assert _get(f"{base}/machines?token={token}").status_code == 200
        assert _get(f"{base}/machines/x?token={token}", headers=auth).status_code == 404
        r = httpx.post(f"{base}/twin/mill/shock", json={"wear": 0.5}, headers=auth, timeout=5)
        assert r.status_code == 202
        r = httpx.post(f"{base}/twin/mill/shock?token={token}", json={}, timeout=5)
        assert r.status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "GET /machines?token=*** HTTP/1.1" in text  # the access log ran, redacted
    assert token not in text
    assert "Application shutdown complete" in text


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Platform, Path]]:
    """A real uvicorn server (in a thread) over a platform whose view follows the log."""
    log_path = tmp_path / "log.db"
    config = PlatformConfig(
        bus_url=f"sqlite:///{log_path}",
        data_dir=tmp_path,
        registry_dir=tmp_path / "models",
        token="t",
        status_dir=tmp_path / "status",
    )
    platform = Platform(config)
    platform.start()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform, dashboard=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_for(lambda: server.started, what="the server to start")
    yield f"http://127.0.0.1:{port}", platform, log_path
    server.should_exit = True
    thread.join(timeout=WAIT_S)
    platform.close()


def _alarm(n: int) -> Alarm:
    return Alarm(
        ts=utc(1.767e9 + n),
        alarm_id=f"pump-001/machine/{n}",
        machine_id="pump-001",
        alarm_type="machine",
        severity="high",
        status="active",
        transition="raised",
        raised_at=utc(1.767e9 + n),
    )


def test_live_streams_alarms_and_health_as_they_land_and_unsubscribes(server) -> None:
    base, platform, log_path = server
    active: list[object] = []  # the view's live subscriptions
    subscribe = platform.view.subscribe

    def counting(callback):
        unsubscribe = subscribe(callback)
        active.append(callback)

        def undo() -> None:
            active.remove(callback)
            unsubscribe()

        return undo

    platform.view.subscribe = counting  # type: ignore[method-assign]
    writer = SqliteLog(log_path)
    ALARMS.create(writer)
    HEALTH.create(writer)
    alarms = [_alarm(n) for n in range(1, 4)]
    health = MachineHealth(
        ts=alarms[0].ts + timedelta(seconds=1),
        machine_id="pump-001",
        risk=0.2,
        risk_level="low",
        health=88.0,
    )
    received: list[tuple[str, bytes]] = []
    with httpx.stream("GET", f"{base}/live", params={"limit": 4}, timeout=WAIT_S) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        _wait_for(lambda: active, what="the subscription")
        writer.produce(OutRecord(ALARMS.name, b"pump-001", encode(a)) for a in alarms)
        writer.produce([OutRecord(HEALTH.name, b"pump-001", encode(health))])
        writer.flush()
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                received.append((event, line.removeprefix("data: ").encode()))
    # In log order per topic (the view reads topic by topic: no order across them).
    assert [d for k, d in received if k == "alarm"] == [encode(a) for a in alarms]
    assert [d for k, d in received if k == "health"] == [encode(health)]
    assert len(received) == 4
    _wait_for(lambda: not active, what="the unsubscription")
    r = httpx.get(f"{base}/live", params={"kinds": "alarm,weather"}, timeout=5)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "kinds"]
    writer.close()


class _View:
    """A view with one subscription slot (what ``stream`` needs)."""

    def __init__(self) -> None:
        self.callback = None
        self.unsubscribed = False

    def subscribe(self, callback):
        self.callback = callback

        def unsubscribe() -> None:
            self.unsubscribed = True

        return unsubscribe


def test_a_client_too_far_behind_is_dropped_not_buffered() -> None:
    """The polling thread outruns the client: past ``max_pending`` events the feed keeps
    nothing more, the stream sends one ``dropped`` event and ends, and it unsubscribes."""
    view = _View()

    async def run() -> list[bytes]:
        feed = Feed(asyncio.get_running_loop(), max_pending=3)
        events = stream(SimpleNamespace(view=view), feed, None)  # type: ignore[arg-type]
        out = [await anext(events)]
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.01)  # the stream now waits for the feed
        for i in range(10):
            view.callback("alarm", b'{"n":%d}' % i)
        assert feed.dropped and feed.take() == []  # nothing kept once dropped
        out.append(await waiting)
        out.extend([e async for e in events])
        return out

    assert asyncio.run(run()) == [
        b"retry: 2000\n\n",
        b'event: dropped\ndata: {"detail":"too far behind: reconnect"}\n\n',
    ]
    assert view.unsubscribed
