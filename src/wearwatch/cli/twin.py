"""``wearwatch twin``: run a twin against the log (or to JSON lines) and steer it live."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wearwatch.cli.errors import describe, fail, finite

if TYPE_CHECKING:
    from wearwatch.events import TwinCommand
    from wearwatch.twin.fleet.publish import FleetPublishStats
    from wearwatch.twin.resume import TwinJournal

app = typer.Typer(help="Digital twins: run them, steer them.", no_args_is_help=True)

_StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="resume journal (commands applied, position reached): a restart with the same "
        "seed fast-forwards to where the twin stopped and continues",
    ),
]
_StatusDirOption = Annotated[
    Path | None,
    typer.Option("--status-dir", help="write a status file here about once a second"),
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
#: Longest virtual duration (1000 years): more digits than that is a typo, and an overflow to inf.
MAX_DURATION_S = 1000 * 365.25 * 86400


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``10m``, ``2h`` or a bare number of seconds.

    >>> parse_duration("10m"), parse_duration("90s"), parse_duration("2h"), parse_duration("5")
    (600.0, 90.0, 7200.0, 5.0)
    >>> parse_duration("ten minutes")
    Traceback (most recent call last):
    ...
    ValueError: duration 'ten minutes': expected a number with unit s, m or h (e.g. 90s, 10m, 2h)
    >>> parse_duration("1" + "0" * 400 + "h")
    Traceback (most recent call last):
    ...
    ValueError: duration '1000…h': must be at most 31557600000 s (1000 years)
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"duration {text!r}: expected a number with unit s, m or h (e.g. 90s, 10m, 2h)"
        )
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {text!r}: must be greater than zero")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        shown = text if len(text) <= 20 else f"{text.strip()[:4]}…{text.strip()[-1]}"
        raise ValueError(f"duration {shown!r}: must be at most {MAX_DURATION_S:.0f} s (1000 years)")
    return seconds


@app.command("mill")
def mill_cmd(
    scenario: str = typer.Option("none", help="none, gradual, abrupt or cycle"),
    seed: int = typer.Option(7, help="seed; ids and events derive from it"),
    speed: float = typer.Option(
        0.0,
        callback=finite(low=0.0),
        help="real-time pacing (60 = a virtual minute per second); 0 = as fast as possible",
    ),
    duration: str = typer.Option("10m", help="virtual duration, e.g. 90s, 10m, 2h"),
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write JSON lines to this file ('-' = stdout) instead"),
    ] = None,
    loss: float = typer.Option(0.01, callback=finite(0, 1), help="share of measurements lost"),
    duplicate: float = typer.Option(
        0.01, callback=finite(0, 1), help="share of measurements duplicated"
    ),
    late: float = typer.Option(
        0.005, callback=finite(0, 1), help="share of measurements delayed beyond the join TTL"
    ),
    ideal: bool = typer.Option(
        False,
        "--ideal",
        help="the textbook twin: the plant differs from the Level-2 model only by wear, roll "
        "flattening and sensor noise (default: the realistic twin, with pyrometer fouling, "
        "heat-to-heat chemistry, roll thermal growth and one grade's flow-stress mismatch)",
    ),
    head: str = typer.Option(
        "0s",
        help="paced runs: this much virtual time first goes out as fast as possible (history "
        "for the pipeline to learn from before anyone watches), e.g. 2h",
    ),
    state_dir: _StateDirOption = None,
    status_dir: _StatusDirOption = None,
    status_name: str = typer.Option("twin-mill", help="name of the status file"),
) -> None:
    """Run the hot strip mill twin against the configured log (or to JSON lines).

    Passes go to mill.passes (keyed by slab), true wear and maintenance to
    mill.twin. In paced runs (--speed > 0) the twin follows live commands from mill.control
    (see `wearwatch twin command --help`).
    """
    from wearwatch.events import encode
    from wearwatch.twin.mill.scenarios import SCENARIOS
    from wearwatch.twin.mill.simulation import MillTwin, MillTwinConfig, paced, planned_passes_for

    if scenario not in SCENARIOS:
        fail(f"--scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration: {exc}")
    try:
        head_s = 0.0 if head.strip() in ("0", "0s") else parse_duration(head)
    except ValueError as exc:
        fail(f"--head: {exc}")
    if out is not None and (state_dir is not None or status_dir is not None):
        fail("--state-dir and --status-dir go with the log, not with --out")
    try:
        base = MillTwinConfig(seed=seed, scenario=scenario)
        cfg = MillTwinConfig(
            seed=seed,
            scenario=scenario,
            planned_passes=planned_passes_for(seconds, base),
            loss_share=loss,
            duplicate_share=duplicate,
            late_share=late,
            ideal=ideal,
        )
    except ValueError as exc:
        fail(describe(exc))
    twin = MillTwin(cfg)
    session = _TwinSession(status_dir, status_name, speed)
    journal = None
    if state_dir is not None:
        from wearwatch.twin.resume import TwinJournal, resume_mill

        identity = {
            "twin": "mill",
            "seed": seed,
            "scenario": scenario,
            "planned_passes": cfg.planned_passes,
            "loss": loss,
            "duplicate": duplicate,
            "late": late,
            "ideal": ideal,
        }
        try:
            journal = TwinJournal(state_dir, identity)
            if journal.resumed:
                skipped = resume_mill(twin, journal, until_s=seconds)
                session.note(f"mill twin: resumed after {skipped:,} events ({_when(cfg, twin)})")
        except ValueError as exc:
            fail(f"--state-dir: {exc}")
    if speed > 0:
        events = paced(twin, speed, until_s=seconds, sleep=session.wait, fast_until_s=head_s)
    else:
        events = twin.events(until_s=seconds)
    if out is not None:
        try:
            _write_lines(events, out, speed, encode)
        except OSError as exc:  # disk full, file too large, read-only, …
            fail(f"--out {out}: {exc.strerror or exc}")
        return
    _publish_to_log(twin, events, bus, speed, session, journal)


def _when(cfg: object, twin: object) -> str:
    from wearwatch.events import utc

    now = cfg.epoch_s + twin.now_s  # type: ignore[attr-defined]
    return utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")


class _TwinSession:
    """A twin process publishing to the log: stops cleanly on SIGTERM/SIGINT (the output taken
    so far is written, the position recorded) and writes its status file about once a second."""

    def __init__(self, status_dir: Path | None, name: str, speed: float) -> None:
        import threading
        import time

        self.stop = threading.Event()
        self.status_dir = status_dir
        self.name = name
        self.speed = speed
        self.started_at = time.time()
        self._last = 0.0

    def install_signals(self) -> None:
        import signal

        def handler(signum: int, frame: object) -> None:
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait(self, seconds: float) -> None:
        """Pacing sleep that a stop cuts short."""
        self.stop.wait(seconds)

    def note(self, line: str) -> None:
        from rich.console import Console

        Console(stderr=True).print(line, highlight=False, soft_wrap=True)

    def status(
        self,
        counters: dict[str, int],
        event_time: float,
        info: dict[str, str],
        state: str = "running",
        force: bool = False,
    ) -> None:
        import os
        import time

        if self.status_dir is None:
            return
        now = time.time()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        from wearwatch.runtime.status import ComponentStatus, write_status

        write_status(
            self.status_dir,
            ComponentStatus(
                name=self.name,
                kind="twin",
                pid=os.getpid(),
                updated_at=now,
                started_at=self.started_at,
                state=state,  # type: ignore[arg-type]
                counters=counters,
                event_time=event_time,
                info={"speed": f"{self.speed:g}", **info},
            ),
        )


def _write_lines(events: object, out: Path, speed: float, encode: object) -> None:
    sink = sys.stdout.buffer if str(out) == "-" else out.open("wb")
    try:
        for event in events:  # type: ignore[attr-defined]
            sink.write(encode(event) + b"\n")  # type: ignore[operator]
            if speed > 0:
                sink.flush()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            sink.flush()
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()


def _publish_to_log(
    twin: Any,
    events: object,
    bus: str | None,
    speed: float,
    session: _TwinSession,
    journal: TwinJournal | None,
) -> None:
    from dataclasses import asdict

    from rich.console import Console

    from wearwatch.config import get_settings
    from wearwatch.twin.mill.publish import PublishStats, publish
    from wearwatch.wiring import open_configured_log

    log = open_configured_log(get_settings(), bus)
    console = Console(stderr=True)
    skipped = journal.position if journal is not None else 0
    epoch_s = twin.config.epoch_s

    def progress(stats: PublishStats) -> None:
        if journal is not None:
            journal.record_position(skipped + stats.events, epoch_s + twin.now_s)
        session.status(
            asdict(stats),
            epoch_s + twin.now_s,
            {"seed": str(twin.config.seed), "position": str(skipped + stats.events)},
        )
        if speed > 0:
            console.print(
                f"passes={stats.passes:,} records={stats.records:,} "
                f"commands={stats.commands} rejected={stats.rejected_commands}",
                highlight=False,
            )

    def journalled(command: TwinCommand, taken: int) -> None:
        if journal is not None:
            journal.record_command(skipped + taken, command)

    session.install_signals()
    stats = PublishStats()
    try:
        with console.status(f"mill twin → {log.url}"):
            stats = publish(
                log,
                events,  # type: ignore[arg-type]
                twin=twin,
                flush_every_s=1.0 if speed > 0 else 0.0,
                on_flush=progress,
                on_command=journalled,
                stop=session.stop,
            )
    finally:
        session.status(
            asdict(stats),
            epoch_s + twin.now_s,
            {"seed": str(twin.config.seed), "position": str(skipped + stats.events)},
            state="stopped",
            force=True,
        )
        log.close()
    console.print(
        f"mill twin: {stats.passes:,} passes, {stats.events:,} events in {stats.records:,} "
        f"records → {log.url}{' (stopped)' if session.stop.is_set() else ''}"
    )


command_app = typer.Typer(
    help="Send a live command to a running (paced) mill twin via mill.control.",
    no_args_is_help=True,
)
app.add_typer(command_app, name="command")


def _send(command: str, args: dict[str, object], bus: str | None) -> None:
    from wearwatch.config import get_settings
    from wearwatch.twin.mill.publish import send_command
    from wearwatch.wiring import open_configured_log

    log = open_configured_log(get_settings(), bus)
    try:
        send_command(log, command, args)
    except ValueError as exc:
        fail(describe(exc))
    finally:
        log.close()
    typer.echo(f"sent {command} {args}")


@command_app.command("set-wear")
def set_wear(
    wear: float = typer.Argument(..., callback=finite(), help="roll wear, 0 (new) … 1.5"),
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """Set the roll wear now."""
    _send("set_wear", {"wear": wear}, bus)


@command_app.command("shock")
def shock(
    wear: float = typer.Option(0.9, callback=finite(), help="wear level after the shock"),
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """An abrupt shock (e.g. a bearing failure) to the given wear level."""
    _send("shock", {"wear": wear}, bus)


@command_app.command("gradual")
def gradual(
    step: float = typer.Option(
        ..., callback=finite(), help="wear added per step (negative: recovery)"
    ),
    every: str = typer.Option(..., help="period between steps, e.g. 30s, 5m (> 0)"),
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """Gradual wear: add STEP every period of virtual time."""
    try:
        every_s = parse_duration(every)
    except ValueError as exc:
        fail(f"--every: {exc}")
    _send("gradual", {"step": step, "every_s": every_s}, bus)


@command_app.command("maintenance")
def maintenance(bus: str = typer.Option(None, help="log URL")) -> None:
    """Maintenance: a roll change resets the wear."""
    _send("maintenance", {}, bus)


@app.command("fleet")
def fleet_cmd(
    machines: int = typer.Option(50, min=1, max=100_000, help="machines in the fleet"),
    tick: str = typer.Option(None, help="time between readings, e.g. 1s (default: config)"),
    seed: int = typer.Option(7, help="seed; readings and events derive from it"),
    speed: float = typer.Option(
        0.0,
        callback=finite(low=0.0),
        help="real-time pacing (60 = a virtual minute per second); 0 = as fast as possible",
    ),
    duration: str = typer.Option("1h", help="virtual duration, e.g. 90s, 10m, 2h"),
    config: Annotated[
        Path | None, typer.Option("--config", help="fleet TOML (default: the shipped fleet)")
    ] = None,
    bus: str = typer.Option(None, help="log URL (default: WEARWATCH_BUS)"),
    state_dir: _StateDirOption = None,
    status_dir: _StatusDirOption = None,
    status_name: str = typer.Option("twin-fleet", help="name of the status file"),
) -> None:
    """Run the machine fleet twin against the configured log.

    Readings go to fleet.readings (columnar, keyed by machine), ground truth (fault onsets,
    failures, repairs, maintenance, sensor faults) to fleet.maintenance. In paced runs
    (--speed > 0) the twin follows live commands from fleet.control (see `wearwatch twin
    fleet-command --help`).
    """
    from rich.console import Console

    from wearwatch.config import get_settings
    from wearwatch.twin.fleet.config import load_fleet_config, with_tick
    from wearwatch.twin.fleet.publish import FleetPublishStats, publish_fleet
    from wearwatch.twin.fleet.simulation import FleetTwin
    from wearwatch.wiring import open_configured_log

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration: {exc}")
    try:
        tick_s = None if tick is None else parse_duration(tick)
    except ValueError as exc:
        fail(f"--tick: {exc}")
    try:
        cfg = load_fleet_config(config)
        if tick_s is not None:
            cfg = with_tick(cfg, tick_s)
    except ValueError as exc:
        fail(f"--tick: {exc}" if tick_s is not None and "tick" in str(exc) else str(exc))
    ticks = max(1, math.ceil(seconds / cfg.tick_s))
    twin = FleetTwin(cfg, machines=machines, seed=seed)
    session = _TwinSession(status_dir, status_name, speed)
    journal = None
    if state_dir is not None:
        import hashlib

        import msgspec

        from wearwatch.twin.resume import TwinJournal, resume_fleet

        identity = {
            "twin": "fleet",
            "seed": seed,
            "machines": machines,
            "config_sha256": hashlib.sha256(msgspec.json.encode(cfg)).hexdigest(),
        }
        try:
            journal = TwinJournal(state_dir, identity)
            if journal.resumed:
                with Console(stderr=True).status("fleet twin: fast-forward to where it stopped"):
                    resume_fleet(twin, journal)
                session.note(
                    f"fleet twin: resumed at tick {twin.tick:,} "
                    f"({_fleet_line(FleetPublishStats(now_s=twin.now_s)).split()[0]})"
                )
        except ValueError as exc:
            fail(f"--state-dir: {exc}")
    log = open_configured_log(get_settings(), bus)
    console = Console(stderr=True)

    def progress(stats: FleetPublishStats) -> None:
        if journal is not None:
            journal.record_position(twin.tick, twin.now_s)
        session.status(_fleet_counters(stats), twin.now_s, _fleet_info(twin, machines))
        if speed > 0:
            console.print(_fleet_line(stats), highlight=False, soft_wrap=True)

    def journalled(command: TwinCommand, tick: int) -> None:
        if journal is not None:
            journal.record_command(tick, command)

    session.install_signals()
    stats = FleetPublishStats(now_s=twin.now_s)
    try:
        with console.status(f"fleet twin ({machines} machines) → {log.url}"):
            stats = publish_fleet(
                log,
                twin,
                max(0, ticks - twin.tick),
                speed=speed,
                on_flush=progress,
                on_command=journalled,
                stop=session.stop,
            )
    finally:
        session.status(
            _fleet_counters(stats),
            twin.now_s,
            _fleet_info(twin, machines),
            state="stopped",
            force=True,
        )
        log.close()
    console.print(f"fleet twin: {_fleet_line(stats)} → {log.url}", highlight=False, soft_wrap=True)


def _fleet_counters(stats: FleetPublishStats) -> dict[str, int]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(stats).items() if isinstance(v, int)}


def _fleet_info(twin: Any, machines: int) -> dict[str, str]:
    return {"seed": str(twin.seed), "machines": str(machines), "tick": str(twin.tick)}


def _fleet_line(stats: FleetPublishStats) -> str:
    from wearwatch.events import utc

    when = utc(stats.now_s).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"t={when} readings={stats.readings:,} records={stats.records:,} "
        f"onsets={stats.fault_onsets} failures={stats.failures} "
        f"sensor_faults={stats.sensor_faults} commands={stats.commands} "
        f"rejected={stats.rejected_commands}"
    )


fleet_command_app = typer.Typer(
    help="Send a live command to a running (paced) fleet twin via fleet.control.",
    no_args_is_help=True,
)
app.add_typer(fleet_command_app, name="fleet-command")

_FleetConfigOption = Annotated[
    Path | None, typer.Option("--config", help="the running twin's fleet TOML (default: shipped)")
]


def _send_fleet(
    command: str, args: dict[str, object], config: Path | None, bus: str | None
) -> None:
    from wearwatch.config import get_settings
    from wearwatch.twin.fleet.config import load_fleet_config
    from wearwatch.twin.fleet.publish import send_fleet_command
    from wearwatch.wiring import open_configured_log

    try:
        cfg = load_fleet_config(config)
    except ValueError as exc:
        fail(str(exc))
    log = open_configured_log(get_settings(), bus)
    try:
        send_fleet_command(log, command, args, cfg)
    except ValueError as exc:
        fail(describe(exc))
    finally:
        log.close()
    typer.echo(f"sent {command} {args}")


@fleet_command_app.command("inject-fault")
def inject_fault(
    machine: str = typer.Argument(..., help="machine id, e.g. pump-001"),
    mode: str = typer.Argument(..., help="degradation mode, e.g. bearing_wear"),
    pf_h: float = typer.Option(
        None, "--pf-h", callback=finite(low=0.0), help="hours to failure (default: drawn)"
    ),
    config: _FleetConfigOption = None,
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """Start a degradation mode on a machine now."""
    args: dict[str, object] = {"machine": machine, "mode": mode}
    if pf_h is not None:
        args["pf_h"] = pf_h
    _send_fleet("inject_fault", args, config, bus)


@fleet_command_app.command("inject-sensor-fault")
def inject_sensor_fault(
    machine: str = typer.Argument(..., help="machine id, e.g. pump-001"),
    sensor: str = typer.Argument(..., help="sensor, e.g. bearing_temp"),
    kind: str = typer.Argument(..., help="stuck, drift, spikes or dropout"),
    duration_h: float = typer.Option(
        None, "--duration-h", callback=finite(low=0.0), help="hours (default: drawn)"
    ),
    config: _FleetConfigOption = None,
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """Start a sensor fault (of the measurement, not the machine) now."""
    args: dict[str, object] = {"machine": machine, "sensor": sensor, "kind": kind}
    if duration_h is not None:
        args["duration_h"] = duration_h
    _send_fleet("inject_sensor_fault", args, config, bus)


@fleet_command_app.command("repair")
def repair(
    machine: str = typer.Argument(..., help="machine id, e.g. pump-001"),
    config: _FleetConfigOption = None,
    bus: str = typer.Option(None, help="log URL"),
) -> None:
    """Put a machine right now: repair a failed one, clear the faults of a running one."""
    _send_fleet("repair", {"machine": machine}, config, bus)
