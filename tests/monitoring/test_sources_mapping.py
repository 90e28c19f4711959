"""The mapping file's checks: every problem is one message that names the file and the line, and
`automatrix ingest` exits 2 with it. The default file is edited one line at a time, so the line
each message names is known."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitoring.samples import METRICS
from monitoring.sources import mapping
from monitoring.sources.prometheus import check_key, selected_names
from serving.settings import ServingSettings

DEFAULT = mapping.DEFAULT_PATH.read_text()


def _line_of(prefix: str) -> int:
    return next(n for n, text in enumerate(DEFAULT.splitlines(), 1) if text.startswith(prefix))


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    assert old in DEFAULT
    path = tmp_path / "mapping.yaml"
    path.write_text(DEFAULT.replace(old, new, 1))
    return path


def test_load_default_mapping_gives_all_five_templates_on_the_otel_names() -> None:
    rules = mapping.load()
    assert list(rules.templates) == list(METRICS)
    assert (rules.service_label, rules.replica_label) == ("job", "instance")
    assert selected_names(rules.query("request_count", timedelta(minutes=1))) == [
        "http_server_request_duration_seconds_count"
    ]


def test_query_rate_window_is_never_below_the_step() -> None:
    rules = mapping.load()
    assert "[60s]" in rules.query("cpu_usage", timedelta(seconds=15))
    assert "[300s]" in rules.query("cpu_usage", timedelta(minutes=5))


@pytest.mark.parametrize(
    ("old", "new", "line_prefix", "says"),
    [
        ("  cpu_usage: >-", "  cpu_percent: >-", "  cpu_usage:", "unknown metric 'cpu_percent'"),
        (
            "  replica: instance ",
            "  pod: instance ",
            "labels:",
            "the 'replica' label is missing",
        ),
        (
            "  service: job ",
            "  service: 'job name' ",
            "  service: job",
            "labels.service must be a Prometheus label name",
        ),
        (
            "(process_resident_memory_bytes)",
            "(process_resident_memory_bytes{pod=$pod})",
            "  memory_usage:",
            "memory_usage: unknown placeholder $pod",
        ),
        (
            "60 * sum by ($by)",
            "60 * sum",
            "  request_count:",
            "request_count: the query keeps neither $by nor the labels job and instance",
        ),
        ("rate_window: 1m", "rate_window: soon", "rate_window:", "rate_window must be a duration"),
        (
            "memory_limit_bytes: 1073741824",
            "memory_limit_bytes: -1",
            "memory_limit_bytes:",
            "must be a positive number",
        ),
        ("rate_window: 1m", "rate_widow: 1m", "rate_window:", "unknown key 'rate_widow'"),
    ],
)
def test_load_mapping_names_the_line_of_each_problem(
    tmp_path: Path, old: str, new: str, line_prefix: str, says: str
) -> None:
    path = _edited(tmp_path, old, new)
    with pytest.raises(mapping.MappingError) as raised:
        mapping.load(path)
    assert str(raised.value).startswith(f"{path}:{_line_of(line_prefix)}: ")
    assert says in str(raised.value)


def test_load_mapping_without_a_metric_names_the_metrics_section(tmp_path: Path) -> None:
    lines = DEFAULT.splitlines(keepends=True)
    first, last = _line_of("  request_count:"), len(lines)
    path = tmp_path / "mapping.yaml"
    path.write_text("".join(lines[: first - 1] + lines[last:]))
    with pytest.raises(mapping.MappingError, match=f":{_line_of('metrics:')}: .*request_count"):
        mapping.load(path)


def test_load_mapping_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = _edited(tmp_path, "rate_window: 1m", "rate_window: [1m")
    with pytest.raises(mapping.MappingError, match=r"mapping.yaml:\d+: not valid YAML"):
        mapping.load(path)


def test_check_key_changes_with_the_templates_and_the_server_not_with_the_file(
    tmp_path: Path,
) -> None:
    url = "http://127.0.0.1:9090"
    same = _edited(tmp_path, "# Requests per minute.", "# Requests per minute, again.")
    other = tmp_path / "other.yaml"
    other.write_text(DEFAULT.replace("rate_window: 1m", "rate_window: 2m"))
    key = check_key(url, mapping.load())
    assert check_key(url, mapping.load(same)) == key  # a comment is no change to the queries
    assert check_key(url, mapping.load(other)) != key
    assert check_key("http://127.0.0.1:9091", mapping.load()) != key


def test_ingest_command_with_a_bad_mapping_file_exits_2_naming_the_line(
    tmp_path: Path, settings: ServingSettings
) -> None:
    from serving.cli.commands import app

    path = _edited(tmp_path, "  cpu_usage: >-", "  cpu_percent: >-")
    result = CliRunner().invoke(
        app, ["ingest", "--source", "prometheus", "--mapping", str(path)], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert f"{path}:{_line_of('  cpu_usage:')}: unknown metric 'cpu_percent'" in result.output
