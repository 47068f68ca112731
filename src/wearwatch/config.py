"""All of wearwatch's configuration, in one place; read only where the app is wired.

The CLI (and the API's startup) call :func:`get_settings` and pass values down, mostly through
:mod:`wearwatch.wiring`; the layers below (``bus``, ``runtime``, ``store``, ``learn``, …) never
import this module — the architecture contract in ``pyproject.toml`` enforces it.

Precedence (highest first): explicit arguments, ``WEARWATCH_*`` environment variables, the TOML
file (``WEARWATCH_CONFIG`` or ``./wearwatch.toml``), then the defaults below. ``wearwatch config
show`` prints the effective values together with the layer each one came from.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wearwatch.bus.base import DEFAULT_PARTITIONS, DEFAULT_RETENTION_S

ENV_PREFIX = "WEARWATCH_"
ANALYTICS_SCHEMES = ("duckdb:///", "clickhouse://", "chdb:///")
DEFAULT_TOML = Path("wearwatch.toml")

#: Longest duration any setting may hold (1000 years): a larger one is a typo, and every
#: duration stays representable wherever it is used (milliseconds in 64-bit integers, datetimes).
MAX_DURATION_S = 1000 * 365.25 * 86400


#: Durations in seconds. Finite by the model's ``allow_inf_nan=False``; bounded here.
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
#: ``0`` keeps records forever (Kafka ``retention.ms=-1``; the embedded log deletes nothing);
#: the same rule as the log's own check, ``wearwatch.bus.base.check_retention_s``.
RetentionSeconds = Seconds


def config_file() -> Path | None:
    """The TOML file in force, if any: ``WEARWATCH_CONFIG`` wins over ``./wearwatch.toml``."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"WEARWATCH_CONFIG={explicit!r}: no such file")
        return path
    return DEFAULT_TOML if DEFAULT_TOML.is_file() else None


class Settings(BaseSettings):
    """Effective configuration. Every field is settable as ``WEARWATCH_<FIELD>``."""

    # allow_inf_nan=False: every float setting is finite (inf or nan would pass ge/gt bounds, or
    # fail them with a misleading message, and crash whatever converts them later).
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", allow_inf_nan=False)

    data_dir: Path = Field(Path("var"), description="where embedded log, stores and models live")
    bus: str = Field(
        "",
        description="log URL: sqlite:///path/to.db (default: <data_dir>/log.db) or kafka://host:port",
    )
    partitions: int = Field(
        DEFAULT_PARTITIONS, ge=1, le=1024, description="partitions per new topic"
    )
    retention_s: RetentionSeconds = Field(
        DEFAULT_RETENTION_S, description="log retention of new topics, seconds; 0 = keep forever"
    )
    max_event_bytes: int = Field(65536, ge=256, description="larger events are dead-lettered")
    watermark_delay_s: Seconds = Field(5.0, description="bounded out-of-orderness")
    max_future_s: PositiveSeconds = Field(
        86400.0,
        description="events further ahead of their record's log append time are dead-lettered "
        "(future)",
    )
    checkpoint_interval_s: PositiveSeconds = Field(
        1.0, description="max seconds between checkpoints"
    )
    poll_max_records: int = Field(500, ge=1, le=1_000_000, description="records per poll")
    lease_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="embedded log: a worker's lease on its partitions; a worker that dies "
        "without closing hands them over after this long",
    )
    max_outage_s: PositiveSeconds = Field(
        60.0,
        description="a worker stops (non-zero exit) once the broker has been unreachable, or "
        "its input topic gone, this long",
    )
    api_host: str = Field("127.0.0.1", description="API/UI bind address")
    api_port: int = Field(8000, ge=1, le=65535, description="API/UI port")
    api_token: str = Field("", description="token for state-changing endpoints (empty: generated)")
    checkpoint_key: str = Field(
        "",
        description="secret that authenticates checkpoints (HMAC-SHA256); required on Kafka "
        "(shared by the group's workers). Empty on the embedded log: a key generated in "
        "<log file>.key (mode 0600)",
    )
    checkpoint_unsigned: bool = Field(
        False,
        description="Kafka without checkpoint_key: run with unauthenticated checkpoints "
        "(sha256 only; whoever can write <group>.checkpoints can run code in the worker)",
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka properties for every Kafka client, passed through as "
        "given: TLS and SASL for a real cluster (security.protocol, sasl.mechanism, "
        "sasl.username, sasl.password, ssl.ca.location ...); env: a JSON object",
    )
    analytics: str = Field(
        "",
        description="analytics store URL: duckdb:///path.duckdb (default: "
        "<data_dir>/analytics.duckdb), clickhouse://[user:password@]host:8123/database, or "
        "chdb:///path (ClickHouse's engine embedded)",
    )
    cmapss_dir: Path | None = Field(None, description="NASA C-MAPSS data directory")
    seed: int = Field(7, description="default seed for twins and trainers")

    @field_validator("bus")
    @classmethod
    def _check_bus(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "kafka://")):
            raise ValueError(f"bus={value!r}: expected sqlite:///path/to.db or kafka://host:port")
        return value

    @field_validator("analytics")
    @classmethod
    def _check_analytics(cls, value: str) -> str:
        if value and not value.startswith(ANALYTICS_SCHEMES):
            raise ValueError(
                f"analytics={value!r}: expected duckdb:///path.duckdb, "
                "clickhouse://[user:password@]host:port/database or chdb:///path"
            )
        return value

    @property
    def analytics_url(self) -> str:
        return self.analytics or f"duckdb:///{self.analytics_path}"

    @property
    def bus_url(self) -> str:
        return self.bus or f"sqlite:///{self.data_dir / 'log.db'}"

    @property
    def analytics_path(self) -> Path:
        return self.data_dir / "analytics.duckdb"

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


def value_sources(settings: Settings) -> dict[str, tuple[Any, str]]:
    """Each field's effective value and the layer it came from (env, file, default)."""
    toml = config_file()
    toml_values: dict[str, Any] = {}
    if toml is not None:
        import tomllib

        toml_values = tomllib.loads(toml.read_text())
    out: dict[str, tuple[Any, str]] = {}
    for name in Settings.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in os.environ:
            origin = f"env {env_name}"
        elif name in toml_values:
            origin = f"file {toml}"
        else:
            origin = "default"
        out[name] = (getattr(settings, name), origin)
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
