"""The settings every layer reads, and the one parser of `name=value,...` lists."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from monitoring.config import OrchestratorSettings, get_settings, parse_pairs, reset
from serving.settings import ServingSettings


def test_parse_pairs_reads_name_value_items() -> None:
    found = parse_pairs("a=http://127.0.0.1:9001/work, b=http://127.0.0.1:9002/work")
    assert found == {"a": "http://127.0.0.1:9001/work", "b": "http://127.0.0.1:9002/work"}


def test_parse_pairs_rejects_a_name_given_twice() -> None:
    with pytest.raises(ValueError, match="'a' is given twice"):
        parse_pairs("a=http://h/1,a=http://h/2")


@pytest.mark.parametrize("item", ["http://h/1", "=http://h/1", "a="])
def test_parse_pairs_rejects_an_item_without_name_or_value(item: str) -> None:
    with pytest.raises(ValueError, match="expected name=url"):
        parse_pairs(item, "url")


def test_read_settings_refuses_an_endpoint_name_given_twice() -> None:
    with pytest.raises(ValidationError, match="'a' is given twice"):
        ServingSettings(relaycore_endpoints="a=http://h/1,a=http://h/2")  # type: ignore[arg-type]


def test_read_settings_refuses_a_service_given_twice_in_scaling_replicas() -> None:
    with pytest.raises(ValidationError, match="'auth' is given twice"):
        OrchestratorSettings(scaling_replicas="auth=2,auth=3")  # type: ignore[arg-type]


def test_read_settings_reads_scaling_replicas_as_counts() -> None:
    settings = OrchestratorSettings(scaling_replicas="auth=2, checkout=5")  # type: ignore[arg-type]
    assert settings.replicas("checkout") == 5 and settings.replicas("search") == 2


def test_reset_settings_reads_the_environment_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "first")
    reset()
    assert get_settings().model_name == "first"
    monkeypatch.setenv("MODEL_NAME", "second")
    assert get_settings().model_name == "first"
    reset()
    assert get_settings().model_name == "second"
    monkeypatch.delenv("MODEL_NAME")
    reset()
