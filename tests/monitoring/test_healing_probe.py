"""The HTTP probe of a drained replica, against a real demo replica process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from monitoring.healing.policy import HealingPolicy, probe_verdict
from monitoring.healing.probe import http_probe
from serving.fleet.plan import ReplicaSpec
from serving.fleet.processes import free_ports, launch, stop, wait_ready


@pytest.fixture(scope="module")
def replica() -> Iterator[ReplicaSpec]:
    spec = ReplicaSpec("checkout", "checkout-0", free_ports(1)[0], 5.0)
    process = launch(spec, seed=3)
    wait_ready(process)
    yield spec
    stop([process])


@pytest.fixture(autouse=True)
def no_faults(replica: ReplicaSpec) -> Iterator[None]:
    yield
    httpx.delete(replica.base_url + "/faults", timeout=5)


def test_probe_healthy_replica_answers_every_request_near_its_service_time(
    replica: ReplicaSpec,
) -> None:
    report = http_probe(count=3)(replica.url)
    assert report.statuses == (200, 200, 200) and report.problem is None
    assert report.median_ms is not None and report.median_ms < 200
    healthy, why = probe_verdict(report, 5.0, HealingPolicy(restore_latency_floor_ms=100.0))
    assert healthy, why


def test_probe_replica_with_errors_fault_reports_its_503s(replica: ReplicaSpec) -> None:
    body = {"kind": "errors", "rate": 1.0, "duration_s": 30}
    httpx.post(replica.base_url + "/faults", json=body, timeout=5).raise_for_status()
    report = http_probe(count=3)(replica.url)
    assert report.statuses == (503,)  # the first failure decides: no more requests
    assert probe_verdict(report, 5.0, HealingPolicy())[0] is False


def test_probe_replica_failing_half_its_requests_is_caught_by_the_eight_default_probes(
    replica: ReplicaSpec,
) -> None:
    body = {"kind": "errors", "rate": 0.5, "duration_s": 30}
    httpx.post(replica.base_url + "/faults", json=body, timeout=5).raise_for_status()
    reports = [http_probe()(replica.url) for _ in range(20)]
    # Passing would take 8 straight 200s: 1 in 256 each, so 20 reports all fail but rarely.
    assert (
        sum(
            probe_verdict(r, 5.0, HealingPolicy(restore_latency_floor_ms=100.0))[0] for r in reports
        )
        <= 1
    )
    assert all(r.statuses[-1] == 503 and len(r.statuses) <= 8 for r in reports)


def test_probe_replica_with_latency_fault_is_judged_slow(replica: ReplicaSpec) -> None:
    body = {"kind": "latency", "factor": 40, "duration_s": 30}
    httpx.post(replica.base_url + "/faults", json=body, timeout=5).raise_for_status()
    report = http_probe(count=3)(replica.url)
    assert report.statuses == (200, 200, 200)
    healthy, why = probe_verdict(report, 5.0, HealingPolicy())
    assert not healthy and "above 15 ms" in why


def test_probe_replica_that_does_not_answer_within_the_timeout_is_a_none_status(
    replica: ReplicaSpec,
) -> None:
    body = {"kind": "latency", "factor": 100, "duration_s": 30}
    httpx.post(replica.base_url + "/faults", json=body, timeout=5).raise_for_status()
    report = http_probe(count=2, timeout_s=0.05)(replica.url)
    assert report.statuses == (None,) and "Timeout" in (report.problem or "")


def test_probe_refuses_a_host_other_than_127_0_0_1() -> None:
    report = http_probe()("http://10.0.0.1:9001/work")
    assert report.statuses == () and "is not one the probe may reach" in (report.problem or "")
    assert probe_verdict(report, 5.0, HealingPolicy())[0] is False


def test_probe_closed_port_is_never_healthy() -> None:
    report = http_probe(count=2)(f"http://127.0.0.1:{free_ports(1)[0]}/work")
    assert report.statuses == (None,) and "ConnectError" in (report.problem or "")
