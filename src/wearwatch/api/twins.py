"""Twin controls: commands for the running mill and fleet twins, through the log.

Each endpoint checks its command as the twin will (the mill against a scratch twin, the fleet
against its configuration: a bad argument is a 422 naming it), writes it to the twin's control
topic and answers 202 with the :class:`~wearwatch.events.TwinCommand` sent; the twin applies
it on its next step. The path names the command (``set-wear``), the body its arguments.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from wearwatch.api import openapi as doc
from wearwatch.api.auth import require_token
from wearwatch.api.errors import invalid
from wearwatch.api.platform import Platform
from wearwatch.events import TwinCommand

_FORBID = ConfigDict(extra="forbid", allow_inf_nan=False)


class Shock(BaseModel):
    """A sudden jump of roll wear (a spalled roll): the router should fall back to physics."""

    model_config = ConfigDict(**_FORBID, json_schema_extra={"examples": [{"wear": 0.9}]})
    wear: float = Field(0.9, ge=0.0, le=1.5, description="wear after the shock")


class Gradual(BaseModel):
    """Wear grows by ``step`` every ``every_s`` seconds of twin time."""

    model_config = ConfigDict(
        **_FORBID, json_schema_extra={"examples": [{"step": 0.01, "every_s": 60}]}
    )
    step: float = Field(ge=-1.0, le=1.0)
    every_s: float = Field(gt=0.0, le=1e9)


class SetWear(BaseModel):
    model_config = ConfigDict(**_FORBID, json_schema_extra={"examples": [{"wear": 0.3}]})
    wear: float = Field(ge=0.0, le=1.5)


class NoArguments(BaseModel):
    model_config = ConfigDict(**_FORBID, json_schema_extra={"examples": [{}]})


class InjectFault(BaseModel):
    """A degradation mode starts now (failure after ``pf_h`` twin hours, or a drawn P-F)."""

    model_config = ConfigDict(
        **_FORBID, json_schema_extra={"examples": [{"mode": "bearing_wear", "pf_h": 12}]}
    )
    mode: str = Field(min_length=1, max_length=100)
    pf_h: float | None = Field(None, gt=0.0, le=1e6)


class InjectSensorFault(BaseModel):
    model_config = ConfigDict(
        **_FORBID,
        json_schema_extra={"examples": [{"sensor": "vibration", "kind": "stuck", "duration_h": 2}]},
    )
    sensor: str = Field(min_length=1, max_length=100)
    kind: str = Field(min_length=1, max_length=100, description="stuck, dropout, spike…")
    duration_h: float | None = Field(None, gt=0.0, le=1e6)


_ARG = re.compile(r"\b([a-z_]+)=")


def _refused(exc: ValueError, args: dict[str, Any]) -> Exception:
    """The twin's refusal as a 422 naming the argument its message names."""
    message = str(exc)
    named = [m for m in _ARG.findall(message) if m in args]
    return invalid("body", named[0] if named else "command", message)


_MILL_EXAMPLE = {
    "type": "twin_command",
    "v": 1,
    "ts": "2026-01-01T06:00:00Z",
    "command": "shock",
    "args": {"wear": 0.9},
}


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(prefix="/twin", tags=["twins"], dependencies=[Depends(require_token)])
    sent = doc.json_response("TwinCommand", "The command sent to the twin", _MILL_EXAMPLE)
    common = {202: sent, **doc.UNAUTHORIZED, **doc.UNPROCESSABLE}

    def mill(command: str, args: dict[str, Any]) -> Response:
        try:
            event: TwinCommand = platform.mill_command(command, args)
        except ValueError as exc:
            raise _refused(exc, args) from None
        return doc.json_bytes(event, 202)

    def fleet(machine_id: str, command: str, args: dict[str, Any]) -> Response:
        try:
            event = platform.fleet_command(machine_id, command, args)
        except LookupError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None
        except ValueError as exc:
            raise _refused(exc, {**args, "machine": machine_id}) from None
        return doc.json_bytes(event, 202)

    def mill_route(path: str, summary: str, description: str) -> Any:
        return router.post(
            f"/mill/{path}",
            summary=summary,
            description=description,
            status_code=202,
            response_class=Response,
            responses=common,
        )

    @mill_route(
        "shock",
        "Mill: roll shock",
        "Sets roll wear to `wear` at once (default 0.9): "
        "the model's error jumps and the safety router falls back to physics.",
    )
    def shock(body: Shock) -> Response:
        return mill("shock", body.model_dump())

    @mill_route(
        "gradual",
        "Mill: gradual wear",
        "Wear grows by `step` every `every_s` seconds of twin time from now on.",
    )
    def gradual(body: Gradual) -> Response:
        return mill("gradual", body.model_dump())

    @mill_route("maintenance", "Mill: maintenance (roll change)", "Resets wear to new rolls.")
    def maintenance(body: Annotated[NoArguments | None, Body(examples=[{}])] = None) -> Response:
        return mill("maintenance", {})

    @mill_route("set-wear", "Mill: set roll wear", "Sets roll wear to `wear` (0 … 1.5).")
    def set_wear(body: SetWear) -> Response:
        return mill("set-wear", body.model_dump())

    unknown = doc.not_found("machine", "unknown machine 'pump-999'")

    def fleet_route(path: str, summary: str, description: str) -> Any:
        return router.post(
            f"/fleet/{{machine_id}}/{path}",
            summary=summary,
            description=description,
            status_code=202,
            response_class=Response,
            responses={**common, **unknown},
        )

    @fleet_route(
        "inject-fault",
        "Fleet: inject a machine fault",
        "A degradation mode of the "
        "machine's type starts now (`bearing_wear`, `imbalance`…); it fails after "
        "`pf_h` twin hours unless repaired.",
    )
    def inject_fault(machine_id: str, body: InjectFault) -> Response:
        return fleet(machine_id, "inject-fault", body.model_dump(exclude_none=True))

    @fleet_route(
        "inject-sensor-fault",
        "Fleet: inject a sensor fault",
        "One of the machine's "
        "sensors goes `stuck`, drops out or spikes for `duration_h` twin hours: a "
        "sensor alarm, not a machine alarm, should follow.",
    )
    def inject_sensor_fault(machine_id: str, body: InjectSensorFault) -> Response:
        return fleet(machine_id, "inject-sensor-fault", body.model_dump(exclude_none=True))

    @fleet_route(
        "repair",
        "Fleet: repair a machine",
        "A failed machine is repaired, a running "
        "one maintained: its machine and sensor faults are cleared.",
    )
    def repair(
        machine_id: str, body: Annotated[NoArguments | None, Body(examples=[{}])] = None
    ) -> Response:
        return fleet(machine_id, "repair", {})

    return router
