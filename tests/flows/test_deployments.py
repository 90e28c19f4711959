"""prefect.yaml: every deployment points at a real flow, on a schedule, with enforced parameters."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
EXPECTED = {
    "every-minute": "* * * * *",
    "daily": "0 3 * * *",
    "daily-capacity": "30 3 * * *",
    "daily-failure-risk": "45 3 * * *",
    "daily-relaycore-policy": "15 4 * * *",
    "every-five-minutes": "*/5 * * * *",
}


def _flow(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_deployments_have_the_documented_schedules() -> None:
    assert {d["name"]: d["schedules"][0]["cron"] for d in DEPLOYMENTS} == EXPECTED


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_is_a_flow_accepting_its_parameters(deployment: dict) -> None:
    flow = _flow(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    flow.validate_parameters(deployment.get("parameters", {}))
    assert deployment["enforce_parameter_schema"] is True
    assert deployment["work_pool"]["name"] == "automatrix"


def test_training_deployment_schema_refuses_invalid_trials() -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError):
        _flow("flows/train.py:train_flow").validate_parameters({"trials": -3})


def test_neuroweaver_training_is_triggered_by_its_drift_event() -> None:
    from flows.drift_watch import DRIFT_EVENT, model_resource

    (daily,) = [d for d in DEPLOYMENTS if d["name"] == "daily"]
    (trigger,) = daily["triggers"]
    assert trigger["enabled"] and trigger["expect"] == [DRIFT_EVENT]
    resource = model_resource("neuroweaver", "1")["prefect.resource.id"]
    assert trigger["match"] == {"prefect.resource.id": resource}
    assert (trigger["posture"], trigger["threshold"]) == ("Reactive", 1)
