"""The `automatrix` command line: settings errors, ingest, train and detect as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serving.settings import ServingSettings

AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [AUTOMATRIX, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def prefect_api(prefect_harness: None) -> dict[str, str]:
    """The session's Prefect server for a CLI run that starts a flow; without it, each such
    run would start a temporary server of its own (tens of seconds)."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": str(PREFECT_API_URL.value())}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "not a url"),
        ("MODEL_RELOAD_INTERVAL", "-1"),
        ("RELAYCORE_ENDPOINTS", "a=ftp://x"),
        ("ENVIRONMENT", "production"),
    ],
)
def test_cli_refuses_a_bad_setting_naming_the_variable(
    variable: str, value: str, settings: ServingSettings
) -> None:
    result = _run("ingest", env={variable: value})
    assert result.returncode == 2
    assert variable in result.stderr or (variable == "ENVIRONMENT" and "API_KEY" in result.stderr)


def test_cli_refuses_an_endpoint_name_given_twice(settings: ServingSettings) -> None:
    result = _run("ingest", env={"RELAYCORE_ENDPOINTS": "a=http://h/1,a=http://h/2"})
    assert result.returncode == 2
    assert "RELAYCORE_ENDPOINTS" in result.stderr and "'a' is given twice" in result.stderr


@pytest.mark.slow
def test_cli_ingest_backfills_a_window_and_prints_the_report(
    settings: ServingSettings, prefect_api: dict[str, str]
) -> None:
    result = _run(
        "ingest",
        "--source",
        "simulator",
        "--start",
        "2026-03-02T00:00:00",
        "--end",
        "2026-03-02T01:00:00",
        env=prefect_api,
    )
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert result.returncode == 0, result.stderr
    assert report["accepted"] == 60 * 5


def test_cli_ingest_refuses_an_unknown_source(settings: ServingSettings) -> None:
    result = _run("ingest", "--source", "kafka")
    assert result.returncode == 2 and "simulator, prometheus or csv" in result.stderr


def test_cli_train_refuses_zero_trials(settings: ServingSettings) -> None:
    result = _run("train", "--trials", "0")
    assert result.returncode == 2 and "trials" in result.stderr


@pytest.mark.parametrize("model", ["neuroweaver", "capacity-forecaster"])
def test_cli_train_refuses_when_training_is_disabled(settings: ServingSettings, model: str) -> None:
    result = _run("train", "--model", model, env={"ENABLE_ML_TRAINING": "false"})
    assert result.returncode == 2 and "ENABLE_ML_TRAINING=false" in result.stderr


def test_cli_train_refuses_an_unknown_model_naming_the_known_ones(
    settings: ServingSettings,
) -> None:
    result = _run("train", "--model", "prophet")
    assert result.returncode == 2
    assert "neuroweaver" in result.stderr and "capacity-forecaster" in result.stderr


def test_cli_train_capacity_forecaster_on_an_empty_store_says_to_ingest(
    settings: ServingSettings, prefect_api: dict[str, str]
) -> None:
    result = _run("train", "--model", "capacity-forecaster", env=prefect_api)
    assert result.returncode == 1 and "ingest first" in result.stderr


def test_cli_train_with_too_little_data_fails_with_a_message(
    settings: ServingSettings, tmp_path: Path, prefect_api: dict[str, str]
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "cpu_usage": 1,
                        "memory_usage": 1,
                        "network_latency": 1,
                        "error_rate": 0,
                        "request_count": 1,
                        "performance_score": 1,
                    }
                ]
            }
        )
    )
    result = _run("train", "--data", str(rows), "--trials", "1", env=prefect_api)
    assert result.returncode == 1 and "at least" in result.stderr


def test_cli_detect_writes_scores_for_each_row(tmp_path: Path) -> None:
    source = tmp_path / "series.csv"
    source.write_text(
        "timestamp,value\n" + "".join(f"2026-03-02 00:{m:02d}:00,{m % 7}\n" for m in range(60))
    )
    result = _run("detect", str(source), "--output-dir", str(tmp_path / "out"))
    lines = (tmp_path / "out" / "series.csv").read_text().splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0] == "timestamp,value,anomaly_score" and len(lines) == 61


def test_cli_detect_names_file_and_row_of_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("timestamp,value\n2026-03-02 00:00:00,1\nnot-a-time,2\n")
    result = _run("detect", str(source), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and "bad.csv" in result.stderr and "row 3" in result.stderr
    assert not (tmp_path / "out" / "bad.csv").exists()


def _daily_demand(path: Path, days: int = 3) -> Path:
    import math

    rows = [
        f"{1_700_000_000 + 300 * i},{100 + 50 * math.sin(2 * math.pi * i / 288)}"
        for i in range(days * 288)
    ]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


def test_cli_forecast_writes_the_rows_after_the_last_one_with_intervals(tmp_path: Path) -> None:
    source = _daily_demand(tmp_path / "demand.csv")
    result = _run("forecast", str(source), "--horizon", "12", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out" / "demand.csv").read_text().splitlines()
    assert lines[0] == "timestamp,forecast,lo_80,hi_80,lo_95,hi_95"
    assert len(lines) == 13 and lines[1].startswith(str(1_700_000_000 + 300 * 3 * 288))


def test_cli_scale_replay_prints_hpa_and_predictive_side_by_side(tmp_path: Path) -> None:
    source = _daily_demand(tmp_path / "demand.csv")
    result = _run(
        "scale-replay",
        str(source),
        "--capacity-per-replica",
        "10",
        "--target-utilisation",
        "0.8",
        "--startup-minutes",
        "10",
        "--price-per-replica-hour",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for rule in ("hpa", "predictive"):
        assert set(report[rule]) == {"under_capacity_minutes", "replica_minutes", "cost"}
        assert report[rule]["cost"] == pytest.approx(report[rule]["replica_minutes"] / 60 * 0.5)


@pytest.mark.parametrize("command", ["forecast", "scale-replay"])
def test_cli_forecast_and_replay_name_file_and_row_of_bad_input(
    command: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n1700000000,1\n1700000300,lots\n")
    options = (
        ["--horizon", "3", "--output-dir", str(tmp_path / "out")]
        if command == "forecast"
        else [
            "--capacity-per-replica",
            "1",
            "--target-utilisation",
            "0.8",
            "--startup-minutes",
            "5",
        ]
    )
    result = _run(command, str(bad), *options)
    assert result.returncode == 2 and "bad.csv" in result.stderr and "row 3" in result.stderr
    assert not (tmp_path / "out").exists()
