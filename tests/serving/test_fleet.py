"""The demo fleet: real replica processes over real HTTP on 127.0.0.1, the fault contract, the
scaler, the chaos schedule and the load generator through RelayCore (the real app)."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.fleet.chaos import ChaosConfig, ChaosSchedule
from serving.fleet.faults import FaultRequest
from serving.fleet.fleet import Fleet
from serving.fleet.loadgen import LoadConfig, run_load
from serving.fleet.plan import ReplicaSpec, base_url, plan_fleet
from serving.fleet.processes import ReplicaProcess, free_ports, launch, stop, wait_ready
from serving.fleet.relay import RelayRegistry
from serving.fleet.scaler import FleetScaler
from tests.support.polling import wait_for


@pytest.fixture
def replica() -> Iterator[Callable[..., ReplicaSpec]]:
    """`replica(mean_ms=..., seed=...)` starts one replica process, ready; all stop afterwards."""
    started: list[ReplicaProcess] = []

    def start(mean_ms: float = 10.0, seed: int | None = 7) -> ReplicaSpec:
        spec = ReplicaSpec("checkout", f"checkout-{len(started)}", free_ports(1)[0], mean_ms)
        process = launch(spec, seed)
        started.append(process)
        wait_ready(process)
        return spec

    yield start
    stop(started)


@pytest.fixture(scope="module")
def idle_replica() -> Iterator[ReplicaSpec]:
    """One replica shared by tests that leave it as they found it (refused faults)."""
    spec = ReplicaSpec("search", "search-0", free_ports(1)[0], 5.0)
    process = launch(spec)
    wait_ready(process)
    yield spec
    stop([process])


def _work(spec: ReplicaSpec, count: int) -> list[tuple[int, float]]:
    """(status, seconds) of `count` sequential POST /work calls."""
    found = []
    with httpx.Client(base_url=spec.base_url, timeout=10) as client:
        for i in range(count):
            started = time.perf_counter()
            status = client.post("/work", json={"seq": i}).status_code
            found.append((status, time.perf_counter() - started))
    return found


def test_expose_replica_metrics_parse_under_opentelemetry_names(
    replica: Callable[..., ReplicaSpec],
) -> None:
    spec = replica()
    _work(spec, 3)
    fault = {"kind": "errors", "rate": 0.0, "duration_s": 1}  # the fault contract is not traffic
    httpx.post(spec.base_url + "/faults", json=fault, timeout=5).raise_for_status()
    httpx.get(spec.base_url + "/faults", timeout=5).raise_for_status()
    text = httpx.get(spec.base_url + "/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    duration = families["http_server_request_duration_seconds"]
    assert duration.type == "histogram"
    counts = [s for s in duration.samples if s.name.endswith("_count")]
    assert [s.labels for s in counts] == [
        {"http_request_method": "POST", "http_route": "/work", "http_response_status_code": "200"}
    ]
    assert counts[0].value == 3
    assert families["target_info"].samples[0].labels == {
        "service_name": "checkout",
        "service_instance_id": "checkout-0",
    }
    assert {"process_cpu_seconds", "process_resident_memory_bytes"} <= set(families)


def test_inject_latency_fault_multiplies_service_time_then_clears(
    replica: Callable[..., ReplicaSpec],
) -> None:
    spec = replica(mean_ms=5.0)
    before = statistics.median(s for _, s in _work(spec, 5))
    body = {"kind": "latency", "factor": 20, "duration_s": 1.5}
    assert httpx.post(spec.base_url + "/faults", json=body, timeout=5).status_code == 201
    during = statistics.median(s for _, s in _work(spec, 5))
    # Each draw is at least a fifth of the mean, so x20 gives at least 4 x the mean (20 ms).
    assert during >= 0.020 and during > 4 * before
    wait_for(lambda: httpx.get(spec.base_url + "/faults", timeout=5).json()["faults"] == [], 5)
    after = statistics.median(s for _, s in _work(spec, 5))
    assert after < during / 4


def test_inject_errors_fault_answers_its_rate_of_503s(
    replica: Callable[..., ReplicaSpec],
) -> None:
    spec = replica(mean_ms=1.0)
    body = {"kind": "errors", "rate": 0.5, "duration_s": 30}
    httpx.post(spec.base_url + "/faults", json=body, timeout=5).raise_for_status()
    statuses = Counter(status for status, _ in _work(spec, 200))
    assert set(statuses) == {200, 503}
    assert 0.38 <= statuses[503] / 200 <= 0.62


def test_list_faults_gives_each_active_fault_with_its_remaining_time(
    replica: Callable[..., ReplicaSpec],
) -> None:
    spec = replica()
    httpx.post(spec.base_url + "/faults", json={"kind": "errors", "duration_s": 60}, timeout=5)
    faults = httpx.get(spec.base_url + "/faults", timeout=5).json()["faults"]
    assert len(faults) == 1 and faults[0]["kind"] == "errors" and faults[0]["rate"] == 0.5
    assert 55 < faults[0]["remaining_s"] <= 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "cpu", "duration_s": 5}, "kind"),
        ({"kind": "latency", "factor": 0.5, "duration_s": 5}, "factor"),
        ({"kind": "latency", "factor": 101, "duration_s": 5}, "factor"),
        ({"kind": "errors", "rate": 1.5, "duration_s": 5}, "rate"),
        ({"kind": "errors", "duration_s": 0}, "duration_s"),
        ({"kind": "errors", "duration_s": 3601}, "duration_s"),
        ({"kind": "errors", "duration_s": 5, "extra": 1}, "extra"),
    ],
)
def test_post_fault_out_of_contract_is_422_naming_the_field(
    idle_replica: ReplicaSpec, body: dict[str, Any], field: str
) -> None:
    spec = idle_replica
    response = httpx.post(spec.base_url + "/faults", json=body, timeout=5)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field}:")
    assert httpx.get(spec.base_url + "/faults", timeout=5).json()["faults"] == []


def test_kill_fleet_parent_ends_its_replicas() -> None:
    port = free_ports(1)[0]
    code = (
        "from serving.fleet.plan import ReplicaSpec; from serving.fleet import processes; "
        f"r = processes.launch(ReplicaSpec('s', 's-0', {port}, 5.0)); processes.wait_ready(r); "
        "print(r.process.pid, flush=True); import time; time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    wait_for(lambda: not _exists(child), 10)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_plan_fleet_names_each_replica_of_each_service() -> None:
    specs = plan_fleet(2, 3, [9001, 9002, 9003, 9004, 9005, 9006])
    assert [(s.service, s.name, s.port) for s in specs[:4]] == [
        ("checkout", "checkout-0", 9001),
        ("checkout", "checkout-1", 9002),
        ("checkout", "checkout-2", 9003),
        ("search", "search-0", 9004),
    ]
    assert specs[0].url == "http://127.0.0.1:9001/work"
    assert base_url(specs[0].url) == specs[0].base_url == "http://127.0.0.1:9001"


def test_draw_chaos_schedule_one_valid_fault_per_interval_into_a_replica() -> None:
    specs = plan_fleet(2, 3, list(range(9001, 9007)))
    schedule = ChaosSchedule(ChaosConfig(interval_s=60, fault_s=20), random.Random(3), start=0.0)
    assert schedule.draw(specs, 59.0) is None
    drawn = [schedule.draw(specs, float(t)) for t in range(60, 60 * 200, 10)]
    injections = [d for d in drawn if d is not None]
    assert len(injections) == 199  # one per interval, however often it is asked
    for injection in injections:
        assert injection.replica in specs
        fault = FaultRequest.model_validate(injection.body)
        assert fault.duration_s == 20 and fault.factor <= 100 and 0 <= fault.rate <= 1
    assert Counter(i.body["kind"] for i in injections).keys() == {"latency", "errors"}
    assert {i.replica.name for i in injections} == {s.name for s in specs}


@pytest.mark.parametrize(
    "options", [{"interval_s": 5}, {"interval_s": 60, "fault_s": 60}, {"kinds": ("cpu",)}]
)
def test_build_chaos_config_out_of_bounds_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ChaosConfig(**options)


@pytest.mark.parametrize("options", [{"rate": 201}, {"rate": 0}, {"duration_s": 0}])
def test_build_load_config_out_of_bounds_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoadConfig(**options)


@pytest.fixture
def fleet(relay_app: Callable[..., Any]) -> Iterator[tuple[Fleet, Any]]:
    """A fleet of one service with two replicas, registered in RelayCore (the real app)."""
    client = relay_app()
    started = Fleet(RelayRegistry(client), seed=1)
    started.start(plan_fleet(1, 2, free_ports(2)))
    yield started, client
    started.stop()


def test_start_fleet_registers_each_replica_in_relaycore(fleet: tuple[Fleet, Any]) -> None:
    running, client = fleet
    endpoints = client.get("/api/v2/relaycore/endpoints").json()
    assert {(e["name"], e["service"], e["url"]) for e in endpoints} == {
        (s.name, s.service, s.url) for s in running.replicas()
    }
    sent = client.post(
        "/api/v2/relaycore/message", json={"payload": {"n": 1}, "service": "checkout"}
    )
    assert sent.status_code == 200 and sent.json()["body"]["payload"] == {"n": 1}


def test_scale_fleet_starts_and_stops_replica_processes(fleet: tuple[Fleet, Any]) -> None:
    running, client = fleet
    scaler = FleetScaler(running)
    grown = scaler.scale("checkout", 3)
    assert (grown.ok, grown.before, grown.after) == (True, 2, 3)
    added = running.replicas("checkout")[-1]
    assert httpx.get(added.base_url + "/health", timeout=5).is_success
    listed = {e["name"] for e in client.get("/api/v2/relaycore/endpoints").json()}
    assert listed == {"checkout-0", "checkout-1", "checkout-2"}
    shrunk = scaler.scale("checkout", 1)
    assert (shrunk.ok, shrunk.after, scaler.current("checkout")) == (True, 1, 1)
    listed = {e["name"] for e in client.get("/api/v2/relaycore/endpoints").json()}
    assert listed == {"checkout-0"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(added.base_url + "/health", timeout=5)


def test_run_load_through_relaycore_keeps_to_its_rate(fleet: tuple[Fleet, Any]) -> None:
    _, client = fleet
    config = LoadConfig(rate=40, duration_s=1.5, services=("checkout",))

    async def load() -> tuple[Any, float]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            started = time.monotonic()
            report = await run_load(api, config)
            return report, time.monotonic() - started

    report, took = client.portal.call(load)
    assert report.sent == 60 and report.skipped == 0  # 40/s for 1.5 s, never more
    assert report.statuses == {200: 60}
    assert took >= 1.45


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--api-url", "http://10.0.0.1:8000"], "not on 127.0.0.1"),
        (["--chaos-interval", "60", "--chaos-fault", "90"], "less than the interval"),
    ],
)
def test_run_fleet_command_out_of_bounds_exits_2_with_the_reason(
    args: list[str], said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli.commands", "fleet", "--duration", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and said in done.stderr


def test_scale_fleet_through_the_scaling_webhook_executor() -> None:
    import threading
    from datetime import UTC, datetime

    import uvicorn

    from monitoring.healing.actions import Action, ActionKind
    from monitoring.healing.executors import scaling_webhook
    from serving.fleet.scaler import webhook_app

    running = Fleet(None)
    running.start(plan_fleet(1, 1, free_ports(1)))
    port = free_ports(1)[0]
    server = uvicorn.Server(
        uvicorn.Config(webhook_app(FleetScaler(running)), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15)
        action = Action(
            id="a1",
            kind=ActionKind.SCALING_WEBHOOK,
            service="checkout",
            target="checkout",
            reason="test",
            created_at=datetime.now(UTC),
            params={"url": f"http://127.0.0.1:{port}/scale", "current": 1, "desired": 2},
        )
        result = scaling_webhook(action)
        assert result.ok, result.detail
        assert [s.name for s in running.replicas("checkout")] == ["checkout-0", "checkout-1"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        running.stop()
