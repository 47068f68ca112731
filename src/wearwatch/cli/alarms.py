"""``wearwatch alarms``: an operator's actions on the fleet's alarms, sent through the log.

Each command is an :class:`~wearwatch.events.AlarmCommand` appended to ``fleet.alarm_input``
(where the fleet flow puts the alarm window's scores); the ``fleet-alarms`` worker applies it
in log order, so a replay applies it again at the same place. Its event time is the latest one
the machine has on that topic: a command never moves the alarm stage's clock past the data.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import typer

from wearwatch.cli.errors import fail
from wearwatch.cli.twin import parse_duration

app = typer.Typer(
    help="Acknowledge, clear and silence fleet alarms (applied by `worker fleet-alarms`).",
    no_args_is_help=True,
)

_BUS = typer.Option(None, help="log URL (default: WEARWATCH_BUS)")


def machine_of(alarm_id: str) -> str:
    """The machine an alarm id belongs to (ids are ``<machine>/<type>/<n>``).

    >>> machine_of("pump-001/sensor:vibration/3")
    'pump-001'
    >>> machine_of("pump-001")
    Traceback (most recent call last):
    ...
    ValueError: ALARM_ID 'pump-001': expected <machine>/<type>/<n>, e.g. pump-001/machine/1
    """
    machine, _, rest = alarm_id.partition("/")
    kind, _, n = rest.rpartition("/")
    if not machine or not kind or not n.isdigit() or int(n) < 1:
        raise ValueError(
            f"ALARM_ID {alarm_id!r}: expected <machine>/<type>/<n>, e.g. pump-001/machine/1"
        )
    return machine


def parse_until(text: str, now: datetime) -> datetime:
    """A silence's end: a duration after ``now`` (``2h``) or an ISO time with its offset.

    >>> from wearwatch.events import utc
    >>> parse_until("2h", utc(0.0)).isoformat()
    '1970-01-01T02:00:00+00:00'
    >>> parse_until("1970-01-01T05:00:00Z", utc(0.0)).isoformat()
    '1970-01-01T05:00:00+00:00'
    >>> parse_until("1970-01-01T05:00", utc(0.0))
    Traceback (most recent call last):
    ...
    ValueError: --until '1970-01-01T05:00': a time needs its UTC offset (…Z or …+01:00)
    """
    if text[:1].isdigit() and ("-" in text or "T" in text):
        try:
            until = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--until {text!r}: expected a duration (2h) or an ISO time") from None
        if until.tzinfo is None:
            raise ValueError(f"--until {text!r}: a time needs its UTC offset (…Z or …+01:00)")
    else:
        try:
            until = now + timedelta(seconds=parse_duration(text))
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"--until: {exc}") from None
    if until <= now:
        raise ValueError(
            f"--until {text!r}: must be after the machine's event time {now.isoformat()}"
        )
    return until


def _send(
    machine: str,
    action: str,
    bus: str | None,
    *,
    alarm_id: str = "",
    by: str = "",
    until: str | None = None,
    note: str = "",
) -> None:
    from wearwatch.config import get_settings
    from wearwatch.events import AlarmCommand
    from wearwatch.pipelines.fleet.alarm_commands import latest_event_time, send_alarm_command
    from wearwatch.wiring import open_configured_log

    log = open_configured_log(get_settings(), bus)
    try:
        ts = latest_event_time(log, machine)
        if ts is None:
            fail(f"machine {machine!r}: no scores on fleet.alarm_input yet (nothing to act on)")
        end = None
        if until is not None:
            try:
                end = parse_until(until, ts)
            except ValueError as exc:
                fail(str(exc))
        cmd = AlarmCommand(
            ts=ts, machine_id=machine, action=action, alarm_id=alarm_id, by=by, until=end,
            note=note,
        )  # fmt: skip
        send_alarm_command(log, cmd)
    finally:
        log.close()
    what = f"{action} {alarm_id or machine}" + (f" until {end.isoformat()}" if end else "")
    typer.echo(f"sent: {what} at event time {ts.isoformat()} (applied by `worker fleet-alarms`)")


def _who(by: str) -> str:
    if not by.strip():
        fail(f"--by {by!r}: expected who acts (a non-empty name)")
    return by.strip()


def _machine(alarm_id: str) -> str:
    try:
        return machine_of(alarm_id)
    except ValueError as exc:
        fail(str(exc))


@app.command("ack")
def ack(
    alarm_id: str = typer.Argument(..., help="the alarm, <machine>/<type>/<n>"),
    by: str = typer.Option(..., help="who acknowledges"),
    note: str = typer.Option("", help="a note kept with the command"),
    bus: str = _BUS,
) -> None:
    """Acknowledge ALARM_ID: it stays active, marked as seen by --by."""
    _send(_machine(alarm_id), "acknowledge", bus, alarm_id=alarm_id, by=_who(by), note=note)


@app.command("clear")
def clear(
    alarm_id: str = typer.Argument(..., help="the alarm, <machine>/<type>/<n>"),
    by: str = typer.Option(..., help="who clears"),
    note: str = typer.Option("", help="a note kept with the command"),
    bus: str = _BUS,
) -> None:
    """Clear ALARM_ID now; if its condition is still present it is raised again (new id)."""
    _send(_machine(alarm_id), "clear", bus, alarm_id=alarm_id, by=_who(by), note=note)


@app.command("silence")
def silence(
    machine: str = typer.Argument(..., help="the machine"),
    until: str = typer.Option(
        ..., help="a duration after the machine's event time (2h) or an ISO time (…Z)"
    ),
    by: str = typer.Option("", help="who silences"),
    note: str = typer.Option("", help="a note kept with the command"),
    bus: str = _BUS,
) -> None:
    """Raise no alarm on MACHINE until --until (event time); open alarms keep their course."""
    _send(machine, "silence", bus, by=by.strip(), until=until, note=note)


@app.command("unsilence")
def unsilence(
    machine: str = typer.Argument(..., help="the machine"),
    by: str = typer.Option("", help="who ends the silence"),
    bus: str = _BUS,
) -> None:
    """End MACHINE's silence now; conditions present now are raised."""
    _send(machine, "unsilence", bus, by=by.strip())
