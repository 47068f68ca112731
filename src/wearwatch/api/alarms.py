"""Alarm endpoints: the alarms as the stream keeps them, and operators' actions on them.

An action is not applied here: it is an :class:`~wearwatch.events.AlarmCommand` written to
``fleet.alarm_input``, the alarm stage's one input, so it is applied in the log's order with
the scores (and a replay of the log replays it). The endpoints answer 202 with the command
sent; the stage applies it — or refuses it (an alarm already cleared, say) and dead-letters it
with the reason — and ``GET /alarms`` shows the result within about a second.

Alarm ids contain slashes (``pump-001/machine/1``): the path takes them as they are.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wearwatch.api import openapi as doc
from wearwatch.api.auth import require_token
from wearwatch.api.errors import invalid
from wearwatch.api.platform import Platform
from wearwatch.events import SEVERITIES

ALARM_EXAMPLE = "pump-001/machine/1"
_ALARM = {
    "type": "alarm",
    "v": 1,
    "ts": "2026-01-01T06:00:00Z",
    "alarm_id": ALARM_EXAMPLE,
    "machine_id": "pump-001",
    "alarm_type": "machine",
    "severity": "high",
    "status": "active",
    "acknowledged": False,
    "transition": "escalated",
    "reason": "zscore vibration.mean 6.1 > 4",
    "triggers": [],
    "raised_at": "2026-01-01T05:40:00Z",
    "ack_by": "",
    "ack_at": None,
    "refreshes": 3,
}
_COMMAND = {
    "type": "alarm_command",
    "v": 1,
    "ts": "2026-01-01T06:00:30Z",
    "machine_id": "pump-001",
    "action": "acknowledge",
    "alarm_id": ALARM_EXAMPLE,
    "by": "operator",
    "until": None,
    "note": "",
}
Severity = Literal["normal", "watch", "medium", "high", "critical"]
assert tuple(Severity.__args__) == SEVERITIES  # type: ignore[attr-defined]


class ActBy(BaseModel):
    """Who acknowledges or clears, and why."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"by": "operator", "note": "on it"}]}
    )

    by: str = Field(min_length=1, max_length=200, description="who acts")
    note: str = Field("", max_length=2000)


class SilenceRequest(BaseModel):
    """Silence a machine's alarm notifications until ``until`` (event time, with a timezone)
    or for ``duration_s`` seconds of the machine's event time from now: give one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"duration_s": 3600, "by": "operator"}]},
    )

    until: AwareDatetime | None = None
    duration_s: float | None = Field(None, gt=0, le=30 * 86400)
    by: str = Field("", max_length=200)
    note: str = Field("", max_length=2000)


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["alarms"])
    view = platform.view
    unknown_alarm = doc.not_found("alarm", f"unknown alarm '{ALARM_EXAMPLE}9'")
    accepted = doc.json_response("AlarmCommand", "The command sent to the alarm stage", _COMMAND)

    @router.get(
        "/alarms",
        summary="Alarms, filtered",
        description="The latest state of every alarm (one per `alarm_id`), by the time it "
        "was raised, then id; filter by `status` (active, recovering, cleared, or open: any "
        "but cleared), `severity` and `machine`.",
        response_class=Response,
        responses={
            200: doc.json_response("Alarm", "The alarms", [_ALARM], many=True),
            **doc.UNPROCESSABLE,
        },
    )
    async def alarms(
        status: Annotated[
            Literal["active", "recovering", "cleared", "open"] | None,
            Query(description="open: any but cleared"),
        ] = None,
        severity: Annotated[Severity | None, Query()] = None,
        machine: Annotated[str | None, Query(examples=["pump-001"])] = None,
    ) -> Response:
        return doc.json_bytes(view.alarms(status=status, severity=severity, machine_id=machine))

    @router.get(
        "/alarms/{alarm_id:path}",
        summary="One alarm's latest state",
        description="`alarm_id` is `<machine>/<type>/<n>`, slashes included.",
        response_class=Response,
        responses={200: doc.json_response("Alarm", "The alarm", _ALARM), **unknown_alarm},
    )
    async def alarm(alarm_id: str) -> Response:
        found = view.alarm(alarm_id)
        if found is None:
            raise HTTPException(404, detail=f"unknown alarm {alarm_id!r}")
        return doc.json_bytes(found)

    def _act(alarm_id: str, action: str, body: ActBy) -> Response:
        try:
            command = platform.alarm_command(alarm_id, action, body.by, note=body.note)
        except LookupError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None
        return doc.json_bytes(command, 202)

    @router.post(
        "/alarms/{alarm_id:path}/ack",
        summary="Acknowledge an alarm",
        description="Sends an `acknowledge` command for the alarm to the alarm stage (202). "
        "The stage records who and when; an alarm it cannot acknowledge is dead-lettered "
        "with the reason.",
        status_code=202,
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={202: accepted, **doc.UNAUTHORIZED, **unknown_alarm, **doc.UNPROCESSABLE},
    )
    def ack(alarm_id: str, body: ActBy) -> Response:
        return _act(alarm_id, "acknowledge", body)

    @router.post(
        "/alarms/{alarm_id:path}/clear",
        summary="Clear an alarm",
        description="Sends a `clear` command (202): the stage clears the alarm (reason "
        "`cleared by <by>`); the condition returning later raises a new alarm.",
        status_code=202,
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={202: accepted, **doc.UNAUTHORIZED, **unknown_alarm, **doc.UNPROCESSABLE},
    )
    def clear(alarm_id: str, body: ActBy) -> Response:
        return _act(alarm_id, "clear", body)

    unknown_machine = doc.not_found("machine", "unknown machine 'pump-999'")

    @router.put(
        "/machines/{machine_id}/silence",
        summary="Silence a machine's alarms",
        description="Sends a `silence` command (202) until `until` (event time) or for "
        "`duration_s` seconds of the machine's event time; give exactly one.",
        status_code=202,
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={202: accepted, **doc.UNAUTHORIZED, **unknown_machine, **doc.UNPROCESSABLE},
    )
    def silence(machine_id: str, body: SilenceRequest) -> Response:
        if (body.until is None) == (body.duration_s is None):
            raise invalid("body", "until", "give exactly one of until and duration_s")
        try:
            command = platform.silence(
                machine_id,
                until=body.until,
                duration_s=body.duration_s,
                by=body.by,
                note=body.note,
            )
        except LookupError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None
        return doc.json_bytes(command, 202)

    @router.delete(
        "/machines/{machine_id}/silence",
        summary="End a machine's silence",
        description="Sends an `unsilence` command (202).",
        status_code=202,
        response_class=Response,
        dependencies=[Depends(require_token)],
        responses={202: accepted, **doc.UNAUTHORIZED, **unknown_machine},
    )
    def unsilence(machine_id: str) -> Response:
        try:
            command = platform.unsilence(machine_id)
        except LookupError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None
        return doc.json_bytes(command, 202)

    return router
