"""The API's response documents and their place in the OpenAPI document.

Responses are msgspec Structs — the event contract's own types (``AnomalyScore``, ``Alarm``…)
and the few below — encoded once by msgspec, never re-validated by pydantic on the way out.
Their JSON Schemas come from the same Structs (:func:`msgspec.json.schema_components`) and are
merged into FastAPI's document as components, so the document describes exactly the bytes the
endpoints send, and a schema-driven test (schemathesis) checks one against the other.

>>> doc = {"components": {"schemas": {}}}
>>> add_components(doc)["components"]["schemas"]["Problem"]["required"]
['detail']
>>> json_response("Problem", "Unknown machine")["content"]["application/json"]["schema"]
{'$ref': '#/components/schemas/Problem'}
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from fastapi import Response
from fastapi.openapi.utils import (
    validation_error_definition,
    validation_error_response_definition,
)

from wearwatch.events import (
    Alarm,
    AlarmCommand,
    AnomalyScore,
    FeatureVector,
    MachineHealth,
    MaintenanceEvent,
    PassOutcome,
    Reading,
    TwinCommand,
)
from wearwatch.runtime.status import ComponentStatus
from wearwatch.store.live import LineSummary, MachineSummary

REF = "#/components/schemas/{name}"
#: What every 422 looks like (FastAPI's shape; ``loc`` names the field).
VALIDATION_EXAMPLE = {
    "detail": [{"loc": ["body", "by"], "msg": "Field required", "type": "missing"}]
}
JSON = "application/json"


class Problem(msgspec.Struct, kw_only=True):
    """An error: what went wrong, naming the machine, alarm, family, field or command."""

    detail: str


class ComponentReport(msgspec.Struct, kw_only=True):
    """A component's last status and how fresh it is (stale: no report for 10 s)."""

    status: ComponentStatus
    age_s: float
    stale: bool


class LogHealth(msgspec.Struct, kw_only=True):
    reachable: bool
    #: Topic → records appended so far (sum of its partitions' end offsets).
    topics: dict[str, int] = {}
    error: str = ""


class ModelHealth(msgspec.Struct, kw_only=True):
    family: str
    #: The version this API serves (``anomaly@v0002``; ``""``: none).
    served: str
    error: str = ""


class StoreHealth(msgspec.Struct, kw_only=True):
    registry_dir: str
    families: list[str]
    data_dir: str


class HealthReport(msgspec.Struct, kw_only=True):
    """``ok``: log reachable, every component fresh and running; ``degraded``: something is
    stale, failing, in outage, a model does not load or the read model cannot read the log;
    ``down``: the log is unreachable."""

    status: Literal["ok", "degraded", "down"]
    log: LogHealth
    components: list[ComponentReport]
    store: StoreHealth
    models: list[ModelHealth]
    #: Records the API's read model applied, per topic.
    view: dict[str, int]
    #: Records the read model has seen at the end of the log and not applied yet, per topic.
    view_lag: dict[str, int] = {}
    #: The read model's last error reading the log (``""``: none; it retries).
    view_error: str = ""


class VersionInfo(msgspec.Struct, kw_only=True):
    version: int
    tag: str
    created_at: str
    format: str
    data_hash: str
    params: dict[str, Any] = {}
    metrics: dict[str, Any] = {}


class ModelFamily(msgspec.Struct, kw_only=True):
    family: str
    #: The registry's current version (``None``: none promoted).
    current: int | None
    #: The version this API process serves (``""``: none).
    served: str
    versions: list[VersionInfo]
    #: Promotions and rollbacks, oldest first.
    history: list[dict[str, Any]] = []


class PredictRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Risk from features: EITHER ``features``, the risk model's whole input vector by name
    (a window's features and their trend, as ``GET /models/risk`` lists them), OR ``windows``,
    one machine's feature vectors of the model's window length, oldest first, run through the
    model's trend features as the stream does (the risk is the last window's)."""

    features: dict[str, float] | None = None
    windows: list[FeatureVector] | None = None
    machine_id: str = ""


class RiskPrediction(msgspec.Struct, kw_only=True):
    """P(failure within the horizon) from a window's features and their trend."""

    machine_id: str
    risk: float
    risk_level: Literal["low", "medium", "high"]
    horizon_s: float
    model_version: str
    #: Model inputs that were present (the rest were missing, which LightGBM reads natively).
    inputs_present: int
    inputs_total: int


class RulPrediction(msgspec.Struct, kw_only=True):
    """An engine's remaining useful life at its last cycle, and P(RUL ≤ horizon)."""

    model_version: str
    cycles: int
    last_cycle: int
    rul: float
    horizon_cycles: int
    horizon_probability: float


class IngestResult(msgspec.Struct, kw_only=True):
    topic: str
    readings: int
    records: int


class ServedVersions(msgspec.Struct, kw_only=True):
    """Family → the version the API serves after the action (``""``: none)."""

    served: dict[str, str]
    current: int | None = None


#: Every Struct a response or request body may be, by its schema name.
DOCUMENTS: tuple[type, ...] = (
    Problem,
    HealthReport,
    ModelFamily,
    PredictRequest,
    RiskPrediction,
    RulPrediction,
    IngestResult,
    ServedVersions,
    MachineSummary,
    LineSummary,
    AnomalyScore,
    MachineHealth,
    FeatureVector,
    Alarm,
    AlarmCommand,
    TwinCommand,
    PassOutcome,
    MaintenanceEvent,
    Reading,
)

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def json_bytes(value: Any, status_code: int = 200) -> Response:
    """``value`` (a Struct, or lists/dicts of them) as a JSON response, encoded by msgspec."""
    return Response(_encoder.encode(value), status_code=status_code, media_type=JSON)


def add_components(document: dict[str, Any]) -> dict[str, Any]:
    """Merge the Structs' JSON Schemas into an OpenAPI ``document``'s components."""
    _, components = msgspec.json.schema_components(DOCUMENTS, ref_template=REF)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    # Endpoints that validate bodies themselves answer 422 in FastAPI's own shape.
    schemas.setdefault("ValidationError", validation_error_definition)
    schemas.setdefault("HTTPValidationError", validation_error_response_definition)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid.setdefault("content", {}).setdefault(JSON, {}).setdefault(
                    "example", VALIDATION_EXAMPLE
                )
    return document


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def json_response(
    name: str, description: str, example: Any = None, *, many: bool = False
) -> dict[str, Any]:
    """A ``responses=`` entry: a JSON body of schema ``name`` (a list of them if ``many``)."""
    schema: dict[str, Any] = {"type": "array", "items": ref(name)} if many else ref(name)
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {JSON: content}}


def problem(description: str, example: str) -> dict[str, Any]:
    return json_response("Problem", description, {"detail": example})


#: The errors endpoints share, ready for ``responses=``.
UNAUTHORIZED = {
    401: {
        **problem("No token, or a wrong one: nothing was changed", "invalid token"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    }
}
UNPROCESSABLE = {
    422: {
        "description": "A malformed body or parameter; `detail[].loc` names the field",
        "content": {JSON: {"schema": ref("HTTPValidationError")}},
    }
}


def not_found(what: str, example: str) -> dict[int, dict[str, Any]]:
    return {404: problem(f"Unknown {what}", example)}


def unavailable(example: str) -> dict[int, dict[str, Any]]:
    return {503: problem("The model is not trained yet; the message names the command", example)}
