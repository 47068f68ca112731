"""Configuration: defaults, env over file, clear errors, origins reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from wearwatch.cli import app
from wearwatch.config import Settings, value_sources


def test_env_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "ww.toml"
    toml.write_text("partitions = 6\nseed = 3\n")
    monkeypatch.setenv("WEARWATCH_CONFIG", str(toml))
    monkeypatch.setenv("WEARWATCH_SEED", "11")
    settings = Settings()
    assert settings.partitions == 6
    assert settings.seed == 11
    origins = {name: origin for name, (_, origin) in value_sources(settings).items()}
    assert origins["seed"] == "env WEARWATCH_SEED"
    assert origins["partitions"] == f"file {toml}"
    assert origins["api_host"] == "default"
    assert settings.api_host == "127.0.0.1"


def test_bad_bus_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARWATCH_BUS", "redis://x")
    with pytest.raises(ValidationError, match="redis://x"):
        Settings()


def test_config_show_fails_with_one_line_naming_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEARWATCH_PARTITIONS", "many")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "partitions='many'" in lines[0]


def test_config_show_masks_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEARWATCH_API_TOKEN", "s3cret")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert '"api_token": {"value": "***", "source": "env WEARWATCH_API_TOKEN"}' in result.output


def test_config_show_masks_cluster_passwords_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "WEARWATCH_KAFKA_CONFIG",
        '{"security.protocol": "SASL_SSL", "sasl.username": "ww", "sasl.password": "k-pass",'
        ' "ssl.key.password": "key-pass"}',
    )
    monkeypatch.setenv("WEARWATCH_ANALYTICS", "clickhouse://ana:ch-pass@ch.plant:8123/ww")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0
    for secret in ("k-pass", "key-pass", "ch-pass"):
        assert secret not in result.output
    shown = json.loads(result.output)
    assert shown["kafka_config"]["value"] == {
        "security.protocol": "SASL_SSL",
        "sasl.username": "ww",
        "sasl.password": "***",
        "ssl.key.password": "***",
    }
    assert shown["analytics"]["value"] == "clickhouse://ana:***@ch.plant:8123/ww"


@pytest.mark.parametrize(
    ("name", "value"),
    [("WEARWATCH_ANALYTICS", "mysql://x"), ("WEARWATCH_KAFKA_CONFIG", '["not", "a", "table"]')],
)
def test_bad_cluster_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and name.removeprefix("WEARWATCH_").lower() in lines[0]
