"""The production profile would start: each service's healthcheck probes that service, the API
and the worker reach models only through the MLflow server, and the example environment sets
every variable the settings read, with values they accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from pydantic_settings import BaseSettings

import monitoring.config
import serving.settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.production.yml"
EXAMPLE = ROOT / ".env.production.example"
# Read from the environment outside the settings classes (serving/cli/commands.py).
OTHER_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def probed_url(service: dict[str, Any]) -> str:
    """The URL a healthcheck's command fetches."""
    command = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", command)
    assert match, command
    return match.group(0)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("prefect-server", "http://127.0.0.1:4200/api/health"),
        ("mlflow", "http://127.0.0.1:5000/health"),
        ("api", "http://127.0.0.1:8000/health"),
    ],
)
def test_compose_service_probes_its_own_health_endpoint(name: str, url: str) -> None:
    assert probed_url(services()[name]) == url


@pytest.mark.parametrize("name", ["worker", "deploy"])
def test_compose_service_without_http_disables_the_images_healthcheck(name: str) -> None:
    assert services()[name]["healthcheck"] == {"disable": True}


def test_compose_mlflow_proxies_artifacts_and_answers_its_service_name() -> None:
    command = services()["mlflow"]["command"]
    assert command[command.index("--artifacts-destination") + 1] == "/artifacts"
    assert "--default-artifact-root" not in command
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:5000" in allowed


def test_compose_api_and_worker_reach_models_only_through_the_mlflow_server() -> None:
    for name in ("api", "worker"):
        service = services()[name]
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert not service.get("volumes"), f"{name} shares a folder"


def test_compose_worker_and_api_reach_relaycore_through_the_api_service() -> None:
    api_port = services()["api"]["ports"][0].rsplit(":", 1)[1]
    for name in ("api", "worker", "deploy"):
        url = services()[name]["environment"]["ORCHESTRATOR_API_URL"]
        assert url == f"http://api:{api_port}", name


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings model of monitoring/ and serving/ (subclasses included)."""
    found: list[type[BaseSettings]] = []
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in ("monitoring", "serving") and cls not in found:
            found.append(cls)
    return found


def variables(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings model reads: its prefix plus each field's name or alias."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {(prefix + (field.alias or name)).upper() for name, field in cls.model_fields.items()}


def test_settings_models_are_all_found() -> None:
    assert monitoring.config.Settings in settings_classes()
    assert serving.settings.RelayCoreSettings in settings_classes()
    assert len(settings_classes()) >= 4


def test_env_example_sets_every_variable_the_settings_read() -> None:
    text = EXAMPLE.read_text()
    written = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    wanted = set().union(*(variables(cls) for cls in settings_classes())) | OTHER_VARIABLES
    assert not wanted - written, f"missing from {EXAMPLE.name}: {sorted(wanted - written)}"


def test_env_example_explains_every_variable_in_a_comment_above_its_group() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if not re.match(r"[A-Z][A-Z0-9_]*=", line):
            continue
        above = number - 1
        while above >= 0 and re.match(r"[A-Z][A-Z0-9_]*=", lines[above]):
            above -= 1  # one comment may explain a few variables of a kind
        assert above >= 0 and lines[above].startswith("# "), f"{line.split('=')[0]}: no comment"


def test_env_example_values_are_accepted_by_every_settings_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    for cls in settings_classes():
        for name in variables(cls):
            monkeypatch.delenv(name, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for cls in settings_classes():
        cls()  # raises on a value the model refuses
