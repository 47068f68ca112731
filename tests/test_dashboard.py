"""The dashboard in Chromium against a stand-in platform (tests/dashboard_fake.py): 200
machines refresh live and fast, the token gate, and what the controls send.

The real platform end to end is tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import browser  # tests/ is on sys.path (conftest.py)
from wearwatch.ui.access import STORAGE_KEY, TokenGate

TOKEN = "fake-token-0123456789"


# --- without a browser -------------------------------------------------------------------------


def test_gate_keeps_a_digest_not_the_token() -> None:
    store: dict[str, object] = {}
    gate = TokenGate(TOKEN)
    assert gate.accept(store, TOKEN)
    assert list(store) == [STORAGE_KEY] and TOKEN not in json.dumps(store)
    assert gate.allowed(store) and not TokenGate("rotated").allowed(store)
    gate.forget(store)
    assert not gate.allowed(store)
    assert not TokenGate("").accept(store, "")  # no token configured: nobody gets in


# --- in Chromium ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The dashboard over a fake platform with 200 machines; (base URL, commands file)."""
    pytest.importorskip("playwright")
    tmp = tmp_path_factory.mktemp("dashboard")
    commands = tmp / "commands.jsonl"
    port = browser.free_port()
    script = Path(__file__).with_name("dashboard_fake.py")
    process = subprocess.Popen(
        [
            *(sys.executable, str(script), "--port", str(port), "--machines", "200"),
            *("--token", TOKEN, "--tick", "0.5", "--commands", str(commands)),
        ],
        cwd=tmp,  # NiceGUI's storage directory lands here
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "server.log").open("wb"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        browser.wait_for(lambda: browser.http_ok(f"{base}/health"), 60, "the fake platform")
        yield base, commands
    finally:
        browser.stop(process)
    assert TOKEN not in (tmp / "server.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = browser.launch(p)
        yield b
        b.close()


def _sent(commands: Path) -> list[dict[str, object]]:
    if not commands.exists():
        return []
    return [json.loads(line) for line in commands.read_text().splitlines()]


@pytest.mark.slow
def test_fleet_grid_of_200_machines_refreshes_live_within_budget(fake, chromium) -> None:
    base, _ = fake
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/")
    tiles = page.locator("a.ww-tile")
    browser.wait_for(lambda: tiles.count() == 200, 30, "200 tiles")
    ids = tiles.evaluate_all("ts => ts.map(t => t.dataset.machine)")
    assert ids[:3] == ["pump-001", "motor-002", "compressor-003"] and ids[-1] == "fan-200"
    # live: the fake moves every machine every 0.5 s; the page's one timer follows (1 s)
    tile = page.locator('a.ww-tile[data-machine="motor-002"]')
    changes: list[float] = []
    last, since = tile.inner_text(), time.monotonic()
    while len(changes) < 3:
        text = browser.wait_for(
            lambda before=last: (t := tile.inner_text()) != before and t,
            10,
            "the tile to change",
        )
        now = time.monotonic()
        changes.append(now - since)
        last, since = text, now
    assert statistics.median(changes) <= 2.0, changes
    # the refresh itself (view read + 200 tiles + alarm rows), as the page reports it
    clock = page.locator(".ww-refresh")
    samples = []
    for _ in range(5):
        text = browser.wait_for(
            lambda: (t := clock.inner_text()) not in samples and t, 10, "a new refresh"
        )
        samples.append(text)
    ms = [float(t.split()[2]) for t in samples]
    print(f"fleet refresh with 200 machines: {ms} ms (median {statistics.median(ms):.1f})")
    assert statistics.median(ms) < 100.0, ms
    page.close()


@pytest.mark.slow
def test_without_the_token_the_dashboard_is_read_only(fake, chromium) -> None:
    base, commands = fake
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{base}/?token=wrong")
    page.locator(".ww-token-state").wait_for()
    assert page.locator(".ww-token-state").inner_text() == "read-only"
    ack = page.get_by_role("button", name="Acknowledge")
    ack.wait_for()
    assert ack.is_disabled()
    assert page.get_by_text("Acknowledge is disabled").is_visible()
    page.goto(f"{base}/controls")
    page.get_by_text("Controls are disabled").wait_for()
    for name in ("Shock", "Inject fault", "Repair", "Maintenance (roll change)"):
        assert page.get_by_role("button", name=name).is_disabled(), name
    assert _sent(commands) == []
    context.close()


@pytest.mark.slow
def test_the_token_enables_controls_and_they_send_exact_commands(fake, chromium) -> None:
    base, commands = fake
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{base}/?token={TOKEN}")
    browser.wait_for(
        lambda: page.locator(".ww-token-state").inner_text() == "controls enabled", 10, "unlock"
    )
    browser.wait_for(lambda: "token" not in page.url, 10, "the token to leave the address bar")
    before = len(_sent(commands))
    page.get_by_role("button", name="Acknowledge").click()
    page.locator(".ww-acked").wait_for()
    assert page.locator(".ww-acked").inner_text().startswith("✓ dashboard")
    assert _sent(commands)[before:] == [
        {"alarm": "pump-001/machine/1", "action": "acknowledge", "by": "dashboard"}
    ]
    # the user's storage remembers the unlock: no token in this URL
    page.goto(f"{base}/controls")
    page.get_by_role("button", name="Shock").click()
    browser.wait_for(lambda: len(_sent(commands)) == before + 2, 10, "the shock command")
    page.locator(".ww-machine input").fill("pump-005")
    page.get_by_role("option", name="pump-005", exact=True).click()
    page.locator(".ww-pf input").fill("3")
    page.get_by_role("button", name="Inject fault").click()
    browser.wait_for(lambda: len(_sent(commands)) == before + 3, 10, "the inject command")
    assert _sent(commands)[before + 1 :] == [
        {"twin": "mill", "command": "shock", "args": {"wear": 0.9}},
        {
            "twin": "fleet",
            "machine": "pump-005",
            "command": "inject-fault",
            "args": {"mode": "bearing_wear", "pf_h": 3.0},
        },
    ]
    context.close()


@pytest.mark.slow
def test_an_unknown_machine_says_so(fake, chromium) -> None:
    base, _ = fake
    page = chromium.new_page()
    page.goto(f"{base}/machine/pump-999")
    assert page.locator(".ww-unknown").inner_text() == (
        "unknown machine 'pump-999': no data from it yet"
    )
    page.close()
