"""The Prometheus source against a real Prometheus scraping two real instrumented replicas.

Replica a served 30 requests in 0.1 s and 10 answered 500 in 0.3 s; replica b 20 in 0.05 s,
all after Prometheus' first scrape, so that every rate sees them. Tests query at the instant
Prometheus had seen them all.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from monitoring.sources import mapping
from monitoring.sources.prometheus import PrometheusError, fetch_range
from monitoring.store.engine import open_store
from monitoring.store.metrics import count_samples, read_samples
from serving.settings import ServingSettings
from tests.support.net import free_port
from tests.support.otel_service import OtelService
from tests.support.polling import wait_for

pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    url: str  # Prometheus
    a: OtelService
    b: OtelService
    seen: datetime  # when Prometheus had scraped every recorded request


def _query(url: str, promql: str) -> list[dict]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    return list(body["data"]["result"])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).is_success
    except httpx.HTTPError:
        return False


def _start_prometheus(folder: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("prometheus")
    if not server:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    port = free_port()
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: web\n    static_configs: [{{targets: {targets}}}]\n"
    )
    process = subprocess.Popen(
        [
            server,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    a, b = OtelService(), OtelService()
    process, url = _start_prometheus(
        tmp_path_factory.mktemp("prometheus"), [a.instance, b.instance]
    )
    try:
        wait_for(lambda: _ready(url), timeout=30, interval=0.3)
        wait_for(lambda: len(_query(url, "up == 1")) == 2, timeout=30, interval=0.3)
        time.sleep(
            1.5
        )  # one more scrape, so each series' first sample is the zero before any request
        a.record(200, 0.1, 30)
        a.record(500, 0.3, 10)
        b.record(200, 0.05, 20)
        counted = "sum by (instance) (http_server_request_duration_seconds_count)"
        wait_for(
            lambda: sorted(float(r["value"][1]) for r in _query(url, counted)) == [20, 40], 30, 0.3
        )
        # The next whole second: every sample that showed the requests is older than it.
        seen = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        wait_for(lambda: datetime.now(UTC) > seen, 2, 0.05)
        yield Fleet(url, a, b, seen)
    finally:
        process.terminate()
        process.wait(timeout=10)
        a.stop()
        b.stop()


def edited_mapping(folder: Path, old: str, new: str) -> Path:
    """A copy of the default mapping in `folder` with `old` replaced by `new`."""
    path = folder / "mapping.yaml"
    path.write_text(mapping.DEFAULT_PATH.read_text().replace(old, new))
    return path


def template_line(metric: str) -> int:
    """The line of the default mapping where `metric`'s template starts."""
    lines = mapping.DEFAULT_PATH.read_text().splitlines()
    return next(i for i, t in enumerate(lines, 1) if t.startswith(f"  {metric}:"))


def test_query_default_mapping_gives_each_replica_its_five_metrics(fleet: Fleet) -> None:
    with httpx.Client(timeout=10) as client:
        result = fetch_range(
            fleet.url, mapping.load(), fleet.seen, fleet.seen, timedelta(seconds=1), client
        )
    assert result.empty == [] and result.problems == []
    by_replica = {r.replica: r for r in result.readings}
    a, b = by_replica[fleet.a.instance], by_replica[fleet.b.instance]
    assert {a.service, b.service} == {"web"}
    assert a.error_rate == pytest.approx(25.0)  # 10 of 40 answered 500
    assert b.error_rate == 0.0  # it answered, and never a 5xx
    assert a.network_latency == pytest.approx(150.0)  # (30 x 0.1 s + 10 x 0.3 s) / 40
    assert b.network_latency == pytest.approx(50.0)
    # 60 x the per-second rate over the 60 s window: the 40 requests, plus Prometheus'
    # extrapolation to the window's end, which grows as the series' short life shrinks.
    assert 40 <= a.request_count <= 60 and 20 <= b.request_count <= 30
    assert 0 < a.memory_usage <= 100 and 0 <= a.cpu_usage <= 100


def test_ingest_prometheus_backfill_stores_each_replica_and_its_service_once_per_step(
    fleet: Fleet, settings: ServingSettings, prefect_harness: None
) -> None:
    from flows.ingest import ingest_flow

    # Nothing is recorded after `seen`, so every instant from it on sees all the requests.
    window = {"start": fleet.seen, "end": fleet.seen + timedelta(seconds=4), "step_s": 1}
    wait_for(lambda: datetime.now(UTC) > window["end"] + timedelta(seconds=1.5), 10, 0.2)
    result = ingest_flow(source="prometheus", prometheus_url=fleet.url, **window)
    again = ingest_flow(source="prometheus", prometheus_url=fleet.url, **window)
    assert result["missing"] == [] and result["replicas"] == 2
    assert result["accepted"] == again["accepted"] == 10  # a row per replica and second, 5 seconds
    with Session(open_store(settings.database_url)) as session:
        assert count_samples(session) == 5  # the service's own rows, which the store added
        assert count_samples(session, replica=None) == 15
        last = read_samples(session)[-1]
        own_a = read_samples(session, replica=fleet.a.instance)[-1]
        own_b = read_samples(session, replica=fleet.b.instance)[-1]
    assert own_a.timestamp == own_b.timestamp == last.timestamp
    assert own_a.error_rate == pytest.approx(25.0) and own_b.error_rate == 0.0
    assert own_a.network_latency == pytest.approx(150.0)
    assert own_b.network_latency == pytest.approx(50.0)
    # Both replicas, weighted by their request rates, which Prometheus extrapolates for each
    # target on its own scrape times: near, not exactly, the 10 errors in 60 requests.
    assert last.error_rate == pytest.approx(100 * 10 / 60, rel=0.05)
    assert last.network_latency == pytest.approx(1000 * (6 + 20 * 0.05) / 60, rel=0.05)


def test_ingest_prometheus_reports_an_empty_query_by_name_and_stores_nothing(
    fleet: Fleet, settings: ServingSettings, prefect_harness: None, tmp_path: Path
) -> None:
    from flows.ingest import ingest_flow

    broken = edited_mapping(tmp_path, "process_resident_memory_bytes)", "process_rss_bytes_typo)")
    result = ingest_flow(
        source="prometheus",
        prometheus_url=fleet.url,
        mapping_path=str(broken),
        start=fleet.seen,
        end=fleet.seen + timedelta(seconds=2),
        step_s=1,
    )
    assert result["accepted"] == 0
    assert any(
        m.startswith("memory_usage:") and "Prometheus has no process_rss_bytes_typo" in m
        for m in result["missing"]
    ), result["missing"]
    with Session(open_store(settings.database_url)) as session:
        assert count_samples(session) == 0


def _template_checks(url: str) -> float:
    """How many instant queries Prometheus has answered (its own counter, on its /metrics)."""
    page = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "prometheus_http_requests_total"
        and sample.labels.get("handler") == "/api/v1/query"
    )


def test_ingest_prometheus_checks_the_templates_once_per_mapping_not_on_every_run(
    fleet: Fleet, settings: ServingSettings, prefect_harness: None, tmp_path: Path
) -> None:
    from flows.ingest import ingest_flow

    rules = edited_mapping(tmp_path, "rate_window: 1m", "rate_window: 61s")  # checked by none
    window = {"start": fleet.seen, "end": fleet.seen + timedelta(seconds=2), "step_s": 1}

    def run() -> None:
        result = ingest_flow(
            source="prometheus", prometheus_url=fleet.url, mapping_path=str(rules), **window
        )
        assert result["accepted"] > 0

    before = _template_checks(fleet.url)
    run()
    wait_for(lambda: _template_checks(fleet.url) == before + 5, 5, 0.1)  # the five templates
    run()
    run()
    assert _template_checks(fleet.url) == before + 5
    rules.write_text(rules.read_text().replace("rate_window: 61s", "rate_window: 62s"))
    run()
    wait_for(lambda: _template_checks(fleet.url) == before + 10, 5, 0.1)  # changed: checked again


def test_ingest_flow_with_a_template_prometheus_refuses_fails_naming_the_line(
    fleet: Fleet, settings: ServingSettings, prefect_harness: None, tmp_path: Path
) -> None:
    from flows.ingest import ingest_flow

    broken = edited_mapping(tmp_path, "60 * sum by", "60 * sum by by")
    line = template_line("request_count")
    for _ in range(2):  # a refusal is never remembered as a pass
        with pytest.raises(mapping.MappingError, match=f"{broken}:{line}: request_count: "):
            ingest_flow(source="prometheus", prometheus_url=fleet.url, mapping_path=str(broken))


def test_ingest_command_names_the_line_of_a_bad_promql_and_exits_2(
    fleet: Fleet, settings: ServingSettings, tmp_path: Path
) -> None:
    from serving.cli.commands import app

    broken = edited_mapping(tmp_path, "60 * sum by", "60 * sum by by")
    line = template_line("request_count")
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            "--source",
            "prometheus",
            "--prometheus-url",
            fleet.url,
            "--mapping",
            str(broken),
        ],
    )
    assert result.exit_code == 2
    assert f"{broken}:{line}: request_count: Prometheus refuses it" in result.output


def test_fetch_prometheus_reports_an_unreachable_server() -> None:
    moment = datetime.now(UTC)
    with httpx.Client(timeout=2) as client, pytest.raises(PrometheusError, match="unreachable"):
        fetch_range(
            f"http://127.0.0.1:{free_port()}",
            mapping.load(),
            moment,
            moment,
            timedelta(minutes=1),
            client,
        )
