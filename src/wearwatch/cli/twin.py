"""``wearwatch twin``: run a twin and write its events (JSON lines) to stdout or a file."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from wearwatch.cli.errors import fail

app = typer.Typer(help="twin", no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``10m``, ``2h`` or a bare number of seconds.

    >>> parse_duration("10m"), parse_duration("90s"), parse_duration("2h"), parse_duration("5")
    (600.0, 90.0, 7200.0, 5.0)
    >>> parse_duration("ten minutes")
    Traceback (most recent call last):
    ...
    ValueError: duration 'ten minutes': expected a number with unit s, m or h (e.g. 90s, 10m, 2h)
    """
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(
            f"duration {text!r}: expected a number with unit s, m or h (e.g. 90s, 10m, 2h)"
        )
    return float(match.group(1)) * _UNIT[match.group(2)]


@app.command("mill")
def mill_cmd(
    scenario: str = typer.Option("none", help="none, gradual, abrupt or cycle"),
    seed: int = typer.Option(7, help="seed; ids and events derive from it"),
    speed: float = typer.Option(
        0.0,
        help="real-time pacing (60 = a virtual minute per second); 0 = as fast as possible",
    ),
    duration: str = typer.Option("10m", help="virtual duration, e.g. 90s, 10m, 2h"),
    out: Annotated[
        Path | None, typer.Option("--out", help="write JSON lines here (default stdout)")
    ] = None,
    loss: float = typer.Option(0.01, help="share of measurements lost"),
    duplicate: float = typer.Option(0.01, help="share of measurements duplicated"),
    late: float = typer.Option(0.005, help="share of measurements delayed beyond the join TTL"),
) -> None:
    """Run the hot strip mill twin; events in log order as JSON lines."""
    from wearwatch.events import encode
    from wearwatch.twin.mill.scenarios import SCENARIOS
    from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig, paced, planned_passes_for

    if scenario not in SCENARIOS:
        fail(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration: {exc}")
    if speed < 0:
        fail(f"--speed {speed}: expected a factor > 0 (or 0 for as fast as possible)")
    try:
        base = MillTwinConfig(seed=seed, scenario=scenario)
        cfg = MillTwinConfig(
            seed=seed,
            scenario=scenario,
            planned_passes=planned_passes_for(seconds, base),
            loss_share=loss,
            duplicate_share=duplicate,
            late_share=late,
        )
    except ValueError as exc:
        fail(str(exc))
    twin = MillTwin(cfg)
    events = paced(twin, speed, until_s=seconds) if speed > 0 else twin.events(until_s=seconds)
    sink = out.open("wb") if out else sys.stdout.buffer
    try:
        for event in events:
            sink.write(encode(event) + b"\n")
            if speed > 0:
                sink.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
