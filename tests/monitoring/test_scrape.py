"""The embedded scrape source against real instrumented replica processes (tests/support/
otel_service.py): prometheus-client's parser over each real /metrics page, two scrapes apart.

The plain round (`scrape_round`) gets a clock that moves only when it sleeps, and its sleep is
where the test has the replicas serve a known mix, so every figure is exact. The flow's round
(real clock, Prefect tasks with retries) is read from the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from monitoring.config import reset
from monitoring.sources import scrape
from monitoring.store import control
from monitoring.store.engine import open_store
from monitoring.store.metrics import read_samples
from serving.fleet.plan import ReplicaSpec
from serving.fleet.processes import free_ports, launch, stop, wait_ready
from serving.settings import ServingSettings
from tests.support.net import free_port
from tests.support.otel_service import OtelService

LIMIT = float(2**30)
START = datetime(2026, 12, 2, 12, 0, 0, 250_000, tzinfo=UTC)


class Clock:
    """Time that moves only when the round sleeps; during the sleep, `during` runs."""

    def __init__(self, during: Callable[[], None] = lambda: None) -> None:
        self.at = START
        self.during = during

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.during()
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def services() -> Iterator[Callable[..., OtelService]]:
    """`services(requests=True)` starts one instrumented process; all stop afterwards."""
    started: list[OtelService] = []

    def start(requests: bool = True) -> OtelService:
        started.append(OtelService(requests=requests))
        return started[-1]

    yield start
    for service in started:
        service.stop()


def _round(targets: list[scrape.Target], clock: Clock, interval_s: float = 15) -> scrape.Round:
    with httpx.Client(timeout=5) as client:
        read_all = scrape.reader(client, clock.now)
        return scrape.scrape_round(targets, read_all, clock.sleep, clock.now, interval_s, LIMIT)


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_scrape_round_gives_each_replica_its_five_metrics_for_a_known_mix(
    services: Callable[..., OtelService],
) -> None:
    a, b = services(), services()

    def serve() -> None:
        a.record(200, 0.1, 30)
        a.record(500, 0.3, 10)
        b.record(200, 0.05, 20)

    found = _round(scrape.targets_from_settings({"web": [a.url, b.url]}), Clock(serve))
    assert found.missing == []
    assert found.stamp == START.replace(microsecond=0) + timedelta(seconds=15)
    by_replica = {r.replica: r for r in found.readings}
    ra, rb = by_replica[a.instance], by_replica[b.instance]
    assert (ra.service, rb.service) == ("web", "web")
    assert ra.error_rate == pytest.approx(25.0)  # 10 of 40 answered 500
    assert ra.network_latency == pytest.approx(150.0)  # (30 x 100 ms + 10 x 300 ms) / 40
    assert ra.request_count == pytest.approx(160.0)  # 40 in 15 s, per minute
    assert (rb.error_rate, rb.network_latency) == (0.0, pytest.approx(50.0))
    assert rb.request_count == pytest.approx(80.0)
    assert 0 < ra.memory_usage <= 100 and 0 <= ra.cpu_usage <= 100


def test_scrape_round_reads_a_demo_fleet_replica_through_its_endpoint() -> None:
    spec = ReplicaSpec("checkout", "checkout-0", free_ports(1)[0], 5.0)
    process = launch(spec, 7)
    client_s: list[float] = []

    def serve() -> None:
        # 12 answered; the fault's own POST, which is control, not traffic; 4 x 503.
        calls = [("/work", {})] * 12 + [("/faults", {"kind": "errors", "rate": 1.0})]
        with httpx.Client(base_url=spec.base_url, timeout=10) as client:
            for path, body in calls + [("/work", {})] * 4:
                started = time.perf_counter()
                client.post(path, json=body)
                if path == "/work":
                    client_s.append(time.perf_counter() - started)

    try:
        wait_ready(process)
        targets = scrape.targets_from_endpoints([(spec.name, spec.url, spec.service)])
        [reading] = _round(targets, Clock(serve)).readings
    finally:
        stop([process])
    assert (reading.service, reading.replica) == ("checkout", "checkout-0")
    assert reading.error_rate == pytest.approx(100 * 4 / 16)
    assert reading.request_count == pytest.approx(60 * 16 / 15)
    assert 0 < reading.network_latency <= 1000 * sum(client_s) / 16  # the server's share of it


def test_scrape_round_reports_an_unreachable_target_by_name_and_reads_the_others(
    services: Callable[..., OtelService],
) -> None:
    a, dead = services(), _dead_url()
    targets = scrape.targets_from_settings({"web": [a.url, dead]})
    found = _round(targets, Clock(lambda: a.record(200, 0.1, 6)))
    assert [r.replica for r in found.readings] == [a.instance]
    dead_instance = dead.removeprefix("http://")
    assert len(found.missing) == 1
    assert found.missing[0].startswith(f"web {dead_instance}: {dead}/metrics unreadable")


def test_scrape_round_reports_a_page_without_a_needed_metric_and_reads_no_zeros(
    services: Callable[..., OtelService],
) -> None:
    a, bare = services(), services(requests=False)
    targets = scrape.targets_from_settings({"web": [a.url, bare.url]})
    found = _round(targets, Clock(lambda: a.record(200, 0.1, 6)))
    assert [r.replica for r in found.readings] == [a.instance]
    assert found.missing == [
        f"web {bare.instance}: its page has no http_server_request_duration_seconds"
    ]


def test_scrape_round_reports_a_replica_that_served_nothing_between_the_scrapes(
    services: Callable[..., OtelService],
) -> None:
    idle = services()
    found = _round(scrape.targets_from_settings({"web": [idle.url]}), Clock())
    assert found.readings == []
    assert found.missing == [f"web {idle.instance}: no request in 15 s, so no latency"]


def test_scrape_round_without_targets_says_how_to_name_them() -> None:
    found = _round([], Clock())
    assert found.readings == [] and "SCRAPE_TARGETS" in found.missing[0]


def test_targets_from_endpoints_read_metrics_at_the_base_url_under_the_endpoint_name() -> None:
    targets = scrape.targets_from_endpoints(
        [("web-0", "http://127.0.0.1:9101/work", "web"), ("solo", "http://127.0.0.1:9102/", None)]
    )
    assert targets == [
        scrape.Target("web", "web-0", "http://127.0.0.1:9101/metrics"),
        scrape.Target("solo", "solo", "http://127.0.0.1:9102/metrics"),
    ]


def test_rates_count_a_counter_that_went_down_from_zero_as_promql_does() -> None:
    target = scrape.Target("web", "web-0", "http://127.0.0.1:1/metrics")
    before = scrape.Counters(START, 50.0, 1e8, 1000.0, 100.0, 100.0)
    after = scrape.Counters(START + timedelta(seconds=30), 1.5, 1e8, 20.0, 5.0, 2.0)
    reading = scrape.rates(target, before, after, LIMIT, START)
    assert reading.request_count == pytest.approx(40.0)  # 20 since the restart, in 30 s
    assert (reading.error_rate, reading.network_latency) == (25.0, 100.0)
    assert reading.cpu_usage == pytest.approx(5.0)  # 1.5 s of CPU in 30 s


# The flow: real clock, Prefect tasks, the store.


@pytest.mark.slow  # a Prefect flow run; the dead target's retries take 7 s
def test_ingest_scrape_stores_scrape_targets_and_reports_an_unreachable_one_by_name(
    services: Callable[..., OtelService],
    settings: ServingSettings,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.ingest import ingest_flow

    a, dead = services(), _dead_url()
    a.traffic(ok=3, errors=1, ok_s=0.1, error_s=0.3)
    monkeypatch.setenv("SCRAPE_TARGETS", f'{{"web": ["{a.url}", "{dead}"]}}')
    monkeypatch.setenv("SCRAPE_INTERVAL_S", "1")
    reset()
    result = ingest_flow(source="scrape")
    assert result["replicas"] == 1
    assert [m.split(":", 2)[:2] for m in result["missing"]] == [
        ["web 127.0.0.1", dead.rsplit(":", 1)[1]]
    ]
    with Session(open_store(settings.database_url)) as session:
        [own] = read_samples(session, replica=a.instance)
        [service_row] = read_samples(session)
        assert read_samples(session, replica=dead.removeprefix("http://")) == []
    # Each scrape sees whole ticks of 3 x 200 in 100 ms and 1 x 500 in 300 ms.
    assert (own.service, own.error_rate) == ("web", pytest.approx(25.0))
    assert own.network_latency == pytest.approx(150.0)
    assert 0 < own.request_count <= 60 * 4 / 0.05  # at most one tick of 4 every 50 ms
    # The service's row is the store's combination of its replicas: here, of the one read.
    assert (service_row.replica, service_row.timestamp) == ("", own.timestamp)
    assert service_row.error_rate == pytest.approx(own.error_rate)
    assert service_row.request_count == pytest.approx(own.request_count)


@pytest.mark.slow  # a Prefect flow run
def test_ingest_scrape_without_targets_reads_the_registered_endpoints(
    services: Callable[..., OtelService],
    settings: ServingSettings,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.ingest import ingest_flow

    a, b = services(), services()
    a.traffic(ok=3, errors=1, ok_s=0.1, error_s=0.3)
    b.traffic(ok=2, errors=0, ok_s=0.05, error_s=0.05)
    monkeypatch.delenv("SCRAPE_TARGETS", raising=False)
    monkeypatch.setenv("SCRAPE_INTERVAL_S", "1")
    reset()
    engine = open_store(settings.database_url)
    for name, service in (("web-0", a), ("web-1", b)):
        control.add_endpoint(engine, control.EndpointSpec(name, f"{service.url}/work", "web", 8))
    result = ingest_flow(source="scrape")
    assert (result["missing"], result["replicas"]) == ([], 2)
    with Session(engine) as session:
        [first] = read_samples(session, replica="web-0")
        [second] = read_samples(session, replica="web-1")
        [service_row] = read_samples(session)
    assert (first.service, first.error_rate) == ("web", pytest.approx(25.0))
    assert first.network_latency == pytest.approx(150.0)
    assert (second.error_rate, second.network_latency) == (0.0, pytest.approx(50.0))
    # Beside them, the service's row: requests summed, errors and latency weighted by them.
    total = first.request_count + second.request_count
    assert service_row.timestamp == first.timestamp == second.timestamp
    assert service_row.request_count == pytest.approx(total)
    assert service_row.error_rate == pytest.approx(25.0 * first.request_count / total)
    share = first.request_count / total
    assert service_row.network_latency == pytest.approx(150 * share + 50 * (1 - share))
