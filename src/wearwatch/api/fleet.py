"""Fleet endpoints: machines and their features, the latest scores, and pure scoring.

``GET /predict/latest/{id}`` and ``GET /anomaly/latest/{id}`` are the hot lookups: ``async``
(no thread-pool hop) and they send the read model's pre-encoded bytes as they are (no
re-validation), so their cost is one dict lookup whatever the history. ``POST /anomaly``
decodes the window with msgspec and scores it against a fresh detector state: pure, the
served model and every stream's state stay as they were.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import AwareDatetime

from wearwatch.api import openapi as doc
from wearwatch.api.bodies import decode_body, read_body
from wearwatch.api.errors import invalid
from wearwatch.api.platform import Platform
from wearwatch.events import FeatureVector
from wearwatch.learn.risk.model import risk_level

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MACHINE_EXAMPLE = "pump-001"

_FV_EXAMPLE = {
    "type": "feature_vector",
    "v": 1,
    "ts": "2026-01-01T00:00:30Z",
    "machine_id": MACHINE_EXAMPLE,
    "window_s": 30.0,
    "features": {
        "vibration.count": 30.0,
        "vibration.mean": 2.1,
        "vibration.std": 0.2,
        "vibration.min": 1.7,
        "vibration.max": 2.6,
        "temperature.mean": 61.0,
    },
}
_SUMMARY_EXAMPLE = {
    "machine_id": MACHINE_EXAMPLE,
    "health": 98.2,
    "risk": 0.03,
    "risk_level": "low",
    "time_to_maintenance_h": None,
    "severity": "normal",
    "reason": "",
    "open_alarms": 0,
    "worst_alarm": "",
    "event_time": "2026-01-01T00:00:30Z",
    "model_versions": {"anomaly": "anomaly@v0001", "risk": "risk@v0001"},
}
_SCORE_EXAMPLE = {
    "type": "anomaly_score",
    "v": 1,
    "ts": "2026-01-01T00:00:30Z",
    "machine_id": MACHINE_EXAMPLE,
    "window_s": 30.0,
    "severity": "normal",
    "score": 0.0,
    "category": "none",
    "reason": "",
    "triggers": [],
    "model_version": "anomaly@v0001",
}
_HEALTH_EXAMPLE = {
    "type": "machine_health",
    "v": 1,
    "ts": "2026-01-01T00:00:30Z",
    "machine_id": MACHINE_EXAMPLE,
    "risk": 0.03,
    "risk_level": "low",
    "health": 98.2,
    "time_to_maintenance_h": None,
    "explanation": {"risk": 0.03, "risk_penalty": 1.8},
    "model_version": "risk@v0001",
}


def parse_window(text: str) -> float:
    """``5s``, ``30``, ``1.5m``, ``1h`` → seconds; ValueError otherwise.

    >>> [parse_window(t) for t in ("5s", "30", "1.5m", "1h")]
    [5.0, 30.0, 90.0, 3600.0]
    """
    match = _WINDOW.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"window={text!r}: expected a length like 5s, 30s, 1m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _missing(platform: Platform, machine_id: str, what: str) -> HTTPException:
    if platform.has_machine(machine_id):
        return HTTPException(404, detail=f"machine {machine_id!r} has no {what} yet")
    return HTTPException(404, detail=f"unknown machine {machine_id!r}")


def routes(platform: Platform) -> APIRouter:
    router = APIRouter(tags=["fleet"])
    view = platform.view
    models = platform.models
    unknown_machine = doc.not_found("machine", "unknown machine 'pump-999'")

    @router.get(
        "/machines",
        summary="Every machine with its health, risk, time to maintenance and open alarms",
        description="One summary per machine the platform has seen, sorted by id: the "
        "latest health score (0 failed … 100 as new), failure risk and its level, hours to "
        "maintenance (null: no upward trend), the latest anomaly severity and reason, the "
        "number of open alarms and the worst of them.",
        response_class=Response,
        responses={
            200: doc.json_response("MachineSummary", "The fleet", [_SUMMARY_EXAMPLE], many=True)
        },
    )
    async def machines() -> Response:
        return doc.json_bytes(view.machines())

    @router.get(
        "/machines/{machine_id}",
        summary="One machine's summary",
        description="As one row of `GET /machines`. 404 for a machine the platform does not "
        "know, or one that has reported nothing yet.",
        response_class=Response,
        responses={
            200: doc.json_response("MachineSummary", "The machine", _SUMMARY_EXAMPLE),
            **unknown_machine,
        },
    )
    async def machine(machine_id: str) -> Response:
        summary = view.machine(machine_id)
        if summary is None:
            raise _missing(platform, machine_id, "summary")
        return doc.json_bytes(summary)

    @router.get(
        "/machines/{machine_id}/features",
        summary="A machine's recent window features",
        description="The feature vectors of one window length (`window`: `5s`, `30s`, `1m`…) "
        "from the read model's bounded history, oldest first; `since` (with a timezone) keeps "
        "windows ending after it.",
        response_class=Response,
        responses={
            200: doc.json_response(
                "FeatureVector", "Feature vectors, oldest first", [_FV_EXAMPLE], many=True
            ),
            **unknown_machine,
            **doc.UNPROCESSABLE,
        },
    )
    async def features(
        machine_id: str,
        window: Annotated[
            str, Query(description="window length: 5s, 30s, 1m…", examples=["5s"])
        ] = "5s",
        since: Annotated[
            AwareDatetime | None,
            Query(description="only windows ending after this time (with a timezone)"),
        ] = None,
    ) -> Response:
        try:
            window_s = parse_window(window)
        except ValueError as exc:
            raise invalid("query", "window", str(exc), window) from None
        if not platform.has_machine(machine_id):
            raise HTTPException(404, detail=f"unknown machine {machine_id!r}")
        return doc.json_bytes(view.features(machine_id, window_s, since))

    @router.get(
        "/predict/latest/{machine_id}",
        summary="A machine's latest failure risk and health",
        description="The pipeline's latest `MachineHealth` for the machine: failure risk within "
        "the risk model's horizon, its level, health 0–100, hours to maintenance and the inputs "
        "that made them. A dict lookup in the read model, whatever the history.",
        response_class=Response,
        responses={
            200: doc.json_response("MachineHealth", "The latest health", _HEALTH_EXAMPLE),
            **doc.not_found("machine, or no health yet", "unknown machine 'pump-999'"),
        },
    )
    async def predict_latest(machine_id: str) -> Response:
        body = view.latest_health_json(machine_id)
        if body is None:
            raise _missing(platform, machine_id, "health")
        return Response(body, media_type=doc.JSON)

    @router.get(
        "/anomaly/latest/{machine_id}",
        summary="A machine's latest anomaly score",
        description="The pipeline's latest `AnomalyScore` for the machine (the longest scored "
        "window): severity, score, the strongest trigger and every trigger. A dict lookup.",
        response_class=Response,
        responses={
            200: doc.json_response("AnomalyScore", "The latest score", _SCORE_EXAMPLE),
            **doc.not_found("machine, or no score yet", "unknown machine 'pump-999'"),
        },
    )
    async def anomaly_latest(machine_id: str) -> Response:
        body = view.latest_score_json(machine_id)
        if body is None:
            raise _missing(platform, machine_id, "score")
        return Response(body, media_type=doc.JSON)

    @router.post(
        "/anomaly",
        summary="Score a window without changing any state",
        description="Scores one `FeatureVector` with the served anomaly model against a fresh "
        "detector state of its machine: the same rules as the stream, but no persistence "
        "history, no online learning and nothing written. 503 when no anomaly model is "
        "trained.",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {doc.JSON: {"schema": doc.ref("FeatureVector"), "example": _FV_EXAMPLE}},
            }
        },
        responses={
            200: doc.json_response("AnomalyScore", "The window's score", _SCORE_EXAMPLE),
            **doc.UNPROCESSABLE,
            413: doc.problem("Body too large", "body: over the 16777216 byte limit"),
            **doc.unavailable("no anomaly model is served; train it: wearwatch train anomaly"),
        },
    )
    async def anomaly(request: Request) -> Response:
        fv = decode_body(await read_body(request), FeatureVector)
        model = models.get("anomaly")
        return Response(
            doc.encode(model.score(fv, model.new_state(fv.machine_id))), media_type=doc.JSON
        )

    @router.post(
        "/predict",
        summary="Failure risk from features",
        description="P(failure within the horizon) from the risk model. The body gives EITHER "
        "`features` — the model's whole input vector by name (`GET /models/risk` lists "
        "`params.feature_names`; every one is required and finite) — OR `windows` — one "
        "machine's feature vectors of the model's window length, oldest first, which run "
        "through the model's trend features exactly as in the stream. 503 when no risk model "
        "is trained.",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    doc.JSON: {
                        "schema": doc.ref("PredictRequest"),
                        "example": {"machine_id": MACHINE_EXAMPLE, "windows": [_FV_EXAMPLE]},
                    }
                },
            }
        },
        responses={
            200: doc.json_response(
                "RiskPrediction",
                "The risk",
                {
                    "machine_id": MACHINE_EXAMPLE,
                    "risk": 0.03,
                    "risk_level": "low",
                    "horizon_s": 86400.0,
                    "model_version": "risk@v0001",
                    "inputs_present": 42,
                    "inputs_total": 60,
                },
            ),
            **doc.UNPROCESSABLE,
            413: doc.problem("Body too large", "body: over the 16777216 byte limit"),
            **doc.unavailable("no risk model is served; train it: wearwatch train risk"),
        },
    )
    async def predict(request: Request) -> Response:
        body = decode_body(await read_body(request), doc.PredictRequest)
        model = models.get("risk")
        return doc.json_bytes(predict_risk(model, body))

    @router.get(
        "/baseline/info",
        summary="What the served anomaly model learned",
        description="The anomaly model's configuration, per-machine healthy baselines, hard "
        "limits and PCA detectors (`AnomalyModel.info()`); 503 when none is trained.",
        responses={
            200: {
                "description": "The model's baselines, limits and detectors",
                "content": {
                    doc.JSON: {
                        "schema": {"type": "object"},
                        "example": {
                            "format": "anomaly-model/1",
                            "model_version": "anomaly@v0001",
                            "machines_with_own_baseline": [MACHINE_EXAMPLE],
                        },
                    }
                },
            },
            **doc.unavailable("no anomaly model is served; train it: wearwatch train anomaly"),
        },
    )
    async def baseline_info() -> dict[str, Any]:
        return models.get("anomaly").info()

    return router


def predict_risk(model: Any, body: doc.PredictRequest) -> doc.RiskPrediction:
    """The risk a :class:`~wearwatch.api.openapi.PredictRequest` asks for (422: a bad field)."""
    if (body.features is None) == (body.windows is None):
        raise invalid("body", "features", "give exactly one of features and windows")
    names: list[str] = model.feature_names
    if body.features is not None:
        for name in names:
            if name not in body.features:
                raise invalid("body", f"features.{name}", f"feature {name!r} is missing")
        for name, value in body.features.items():
            if not math.isfinite(value):
                raise invalid("body", f"features.{name}", f"must be finite, got {value!r}")
        inputs = body.features
        machine_id = body.machine_id
    else:
        assert body.windows is not None
        if not body.windows:
            raise invalid("body", "windows", "give at least one window")
        machine_id = body.windows[0].machine_id
        trend = model.new_trend()
        inputs = {}
        for i, fv in enumerate(body.windows):
            if fv.machine_id != machine_id:
                raise invalid(
                    "body",
                    "windows",
                    f"windows[{i}].machine_id={fv.machine_id!r}: every "
                    f"window must be of one machine ({machine_id!r})",
                )
            try:
                inputs = trend.update(fv)
            except ValueError as exc:
                raise invalid("body", "windows", f"windows[{i}]: {exc}") from None
    risk = min(1.0, max(0.0, model.predict_proba(inputs)))
    present = sum(1 for n in names if n in inputs and math.isfinite(inputs[n]))
    return doc.RiskPrediction(
        machine_id=machine_id,
        risk=risk,
        risk_level=risk_level(risk),
        horizon_s=float(model.horizon_s),
        model_version=getattr(model, "model_version", ""),
        inputs_present=present,
        inputs_total=len(names),
    )
