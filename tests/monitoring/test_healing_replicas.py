"""Healing per replica: a replica is drained on its own evidence only, service-wide trouble goes to
scaling, and a drained replica comes back on a probe's evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitoring.assess.scaling import Recommendation
from monitoring.healing.actions import ActionKind
from monitoring.healing.policy import (
    EndpointHealth,
    HealingInputs,
    HealingPolicy,
    decide,
)
from monitoring.healing.probe import ProbeReport

POLICY = HealingPolicy(webhook_url="http://127.0.0.1:9/scale")
HOLD = Recommendation("hpa", 3, 3, (), datetime(2024, 5, 1, tzinfo=UTC), ("cpu within",), 3)


def replica(name: str, **evidence: object) -> EndpointHealth:
    values: dict[str, object] = {"error_rate": 0.0, "latency_ms": 10.0, **evidence}
    return EndpointHealth(name, **values)  # type: ignore[arg-type]


def three(**first: object) -> tuple[EndpointHealth, ...]:
    return (replica("checkout-0", **first), replica("checkout-1"), replica("checkout-2"))


def kinds(inputs: HealingInputs) -> list[tuple[ActionKind, str]]:
    return [(p.kind, p.target) for p in decide(inputs, POLICY)]


def test_decide_own_anomaly_in_one_of_three_replicas_drains_exactly_that_one() -> None:
    endpoints = three(anomaly_score=0.97, anomaly_metrics=("network_latency",))
    [drain] = decide(HealingInputs("checkout", endpoints, recommendation=HOLD), POLICY)
    assert (drain.kind, drain.target) == (ActionKind.DRAIN_ENDPOINT, "checkout-0")
    assert "its own anomaly (score 0.97 on network_latency)" in drain.reason
    assert drain.params["replica"] == "checkout-0"


def test_decide_relaycore_errors_of_one_replica_drain_it() -> None:
    inputs = HealingInputs("checkout", three(error_rate=0.5), recommendation=HOLD)
    assert kinds(inputs) == [(ActionKind.DRAIN_ENDPOINT, "checkout-0")]


def test_decide_replica_whose_relaycore_breaker_tripped_is_drained() -> None:
    for state in ("open", "half_open"):
        [drain] = decide(HealingInputs("checkout", three(breaker=state)), POLICY)
        assert drain.target == "checkout-0"
        assert f"RelayCore's circuit breaker for it is {state}" in drain.reason


def test_decide_breakers_tripped_on_every_replica_drain_none() -> None:
    tripped = tuple(replica(f"checkout-{i}", breaker="open") for i in range(3))
    [scale] = decide(HealingInputs("checkout", tripped, recommendation=HOLD), POLICY)
    assert scale.kind is ActionKind.SCALING_WEBHOOK


def test_decide_replica_slow_against_its_peers_is_drained() -> None:
    [drain] = decide(HealingInputs("checkout", three(latency_ms=200.0)), POLICY)
    assert drain.target == "checkout-0" and "20.0x its peers' 10 ms" in drain.reason


def test_decide_surge_on_all_three_replicas_drains_none_and_proposes_scaling() -> None:
    surge = tuple(
        replica(f"checkout-{i}", anomaly_score=0.95, anomaly_metrics=("request_count",))
        for i in range(3)
    )
    [scale] = decide(HealingInputs("checkout", surge, recommendation=HOLD), POLICY)
    assert scale.kind is ActionKind.SCALING_WEBHOOK
    assert (scale.params["current"], scale.params["desired"]) == (3, 4)
    assert scale.reason.startswith("service-wide: 3 of 3 replicas alike")


def test_decide_most_replicas_bad_alike_is_service_wide() -> None:
    endpoints = (
        replica("checkout-0", error_rate=0.4),
        replica("checkout-1", error_rate=0.5),
        replica("checkout-2"),
    )
    assert kinds(HealingInputs("checkout", endpoints, recommendation=HOLD)) == [
        (ActionKind.SCALING_WEBHOOK, POLICY.webhook_url)
    ]


def test_decide_service_wide_keeps_a_larger_recommendation() -> None:
    out = Recommendation("predictive", 3, 6, (), HOLD.at, ("forecast",), 6)
    surge = tuple(replica(f"c-{i}", anomaly_score=0.95) for i in range(3))
    [scale] = decide(HealingInputs("checkout", surge, recommendation=out), POLICY)
    assert scale.params["desired"] == 6 and scale.params["rule"] == "predictive"


def test_decide_slow_service_on_every_replica_drains_none() -> None:
    slow = tuple(replica(f"c-{i}", latency_ms=200.0 + i) for i in range(3))
    assert decide(HealingInputs("checkout", slow, recommendation=HOLD), POLICY) == []


def test_decide_one_of_two_replicas_bad_is_drained_the_other_stays() -> None:
    endpoints = (replica("a", error_rate=0.9), replica("b", error_rate=0.0))
    assert kinds(HealingInputs("checkout", endpoints)) == [(ActionKind.DRAIN_ENDPOINT, "a")]


def test_decide_last_serving_replica_is_never_drained() -> None:
    endpoints = (replica("a", error_rate=0.9), replica("b", drained=True))
    assert decide(HealingInputs("checkout", endpoints), POLICY) == []


def test_decide_a_starved_replicas_thin_5x_latency_average_is_no_evidence() -> None:
    """The router sent it 3 calls lately: its 5x average rests on them, so nothing is drained."""
    starved = three(latency_ms=50.0, recent_ok=3.0)
    assert kinds(HealingInputs("checkout", starved, recommendation=HOLD)) == []
    busy = three(latency_ms=50.0, recent_ok=40.0)
    assert kinds(HealingInputs("checkout", busy, recommendation=HOLD)) == [
        (ActionKind.DRAIN_ENDPOINT, "checkout-0")
    ]


def test_decide_a_starved_replica_20x_slower_is_drained_on_its_few_calls() -> None:
    [drain] = decide(HealingInputs("checkout", three(latency_ms=200.0, recent_ok=3.0)), POLICY)
    assert drain.target == "checkout-0"
    assert "RelayCore latency 200 ms, 20.0x its peers' 10 ms, on 3 calls" in drain.reason


def test_decide_a_latency_figure_with_no_call_lately_is_no_evidence() -> None:
    """Its last call was minutes ago: the figure is old, whatever it says."""
    stale = three(latency_ms=500.0, recent_ok=0.2)
    assert kinds(HealingInputs("checkout", stale, recommendation=HOLD)) == []


def test_decide_latency_is_held_to_the_well_sampled_peers_only() -> None:
    """A peer's thin 5 ms average does not make a 12 ms replica look slow."""
    endpoints = (
        replica("checkout-0", latency_ms=12.0, recent_ok=40.0),
        replica("checkout-1", latency_ms=4.0, recent_ok=2.0),
        replica("checkout-2", latency_ms=4.0, recent_ok=2.0),
    )
    assert kinds(HealingInputs("checkout", endpoints, recommendation=HOLD)) == []


def probed(*statuses: int | None, ms: float = 12.0) -> ProbeReport:
    return ProbeReport("http://127.0.0.1:9001/work", statuses, tuple(ms for _ in statuses))


def test_decide_drained_replica_with_healthy_probes_is_restored_with_the_evidence() -> None:
    drained = replica("checkout-0", drained=True, probe=probed(200, 200, 200), url="http://x/w")
    inputs = HealingInputs("checkout", (drained, replica("checkout-1")), normal_latency_ms=10.0)
    [restore] = decide(inputs, POLICY)
    assert (restore.kind, restore.target) == (ActionKind.RESTORE_ENDPOINT, "checkout-0")
    assert "status 200, 200, 200, median 12 ms within 30 ms" in restore.reason
    assert restore.params["probe"]["statuses"] == [200, 200, 200]  # type: ignore[index]
    assert restore.params["url"] == "http://x/w"


def test_decide_drained_replica_answering_5xx_or_nothing_stays_drained() -> None:
    for report in (probed(200, 503, 200), probed(200, None, 200)):
        drained = replica("checkout-0", drained=True, probe=report)
        inputs = HealingInputs("checkout", (drained, replica("checkout-1")), normal_latency_ms=10.0)
        assert decide(inputs, POLICY) == []


def test_decide_drained_replica_slower_than_its_service_stays_drained() -> None:
    drained = replica("checkout-0", drained=True, probe=probed(200, 200, 200, ms=200.0))
    inputs = HealingInputs("checkout", (drained, replica("checkout-1")), normal_latency_ms=10.0)
    assert decide(inputs, POLICY) == []


def test_decide_drained_replica_without_a_probe_stays_drained() -> None:
    drained = replica("checkout-0", drained=True, error_rate=0.0)
    assert decide(HealingInputs("checkout", (drained, replica("checkout-1"))), POLICY) == []


def test_decide_drained_replica_is_judged_by_its_probe_not_its_own_anomaly() -> None:
    """Without traffic its own metrics (no requests at all) look anomalous; the probe decides."""
    drained = replica("checkout-0", drained=True, anomaly_score=0.99, probe=probed(200, 200))
    inputs = HealingInputs("checkout", (drained, replica("checkout-1")), normal_latency_ms=10.0)
    assert [p.kind for p in decide(inputs, POLICY)] == [ActionKind.RESTORE_ENDPOINT]


def test_decide_anomaly_its_peers_moved_alike_drains_none_and_proposes_scaling() -> None:
    """A surge one replica's detector saw first: its peers' levels moved as much."""
    first = {"anomaly_score": 0.95, "anomaly_metrics": ("request_count",)}
    first |= {"shift": {"request_count": 1.1}, "peer_shift": {"request_count": 1.05}}
    [scale] = decide(HealingInputs("checkout", three(**first), recommendation=HOLD), POLICY)
    assert scale.kind is ActionKind.SCALING_WEBHOOK
    assert scale.reason.startswith("service-wide: checkout-0's anomaly is its peers' too")


def test_decide_anomaly_its_peers_did_not_share_drains_it_with_the_moves() -> None:
    first = {"anomaly_score": 0.95, "anomaly_metrics": ("network_latency",)}
    first |= {"shift": {"network_latency": 3.0}, "peer_shift": {"network_latency": 0.02}}
    [drain] = decide(HealingInputs("checkout", three(**first), recommendation=HOLD), POLICY)
    assert drain.target == "checkout-0"
    assert "network_latency x20.1 vs its peers' x1.0" in drain.reason


PASSED_BLIP = {
    "anomaly_score": 0.93,
    "anomaly_metrics": ("error_rate",),
    "anomaly_quiet": timedelta(minutes=14),
    "shift": {"error_rate": 0.01},
    "peer_shift": {"error_rate": 0.0},
}


def test_decide_a_passed_blip_still_open_is_no_evidence() -> None:
    """A one-row blip 14 minutes ago, its level back where it was: open for alerts, not a drain."""
    assert kinds(HealingInputs("checkout", three(**PASSED_BLIP), recommendation=HOLD)) == []


def test_decide_a_passed_blip_on_a_peer_does_not_make_a_real_fault_service_wide() -> None:
    fault = {"anomaly_score": 1.0, "anomaly_metrics": ("network_latency",)}
    fault |= {"anomaly_quiet": timedelta(minutes=3)}
    fault |= {"shift": {"network_latency": 3.0}, "peer_shift": {"network_latency": 0.0}}
    endpoints = (
        replica("checkout-0", **fault),
        replica("checkout-1", **PASSED_BLIP),
        replica("checkout-2"),
    )
    assert kinds(HealingInputs("checkout", endpoints, recommendation=HOLD)) == [
        (ActionKind.DRAIN_ENDPOINT, "checkout-0")
    ]


def test_decide_an_anomaly_still_off_its_level_counts_however_long_its_rows_were_quiet() -> None:
    """The detector takes a lasting shift for the new normal: its rows go quiet, the fault stays."""
    lasting = {"anomaly_score": 0.97, "anomaly_metrics": ("network_latency",)}
    lasting |= {"anomaly_quiet": timedelta(minutes=12)}
    lasting |= {"shift": {"network_latency": 3.0}, "peer_shift": {"network_latency": 0.0}}
    assert kinds(HealingInputs("checkout", three(**lasting), recommendation=HOLD)) == [
        (ActionKind.DRAIN_ENDPOINT, "checkout-0")
    ]


def test_decide_a_peer_loaded_by_the_traffic_a_slow_replica_lost_is_not_drained() -> None:
    """Seen in the incident benchmark: checkout-2 slowed x14, the router moved its traffic to
    checkout-0, whose request_count x4.9 and cpu x1.6 were an anomaly of load, not a fault."""
    loaded = {"anomaly_score": 0.99, "anomaly_metrics": ("cpu_usage", "request_count")}
    loaded |= {"shift": {"cpu_usage": 0.47, "request_count": 1.59}}
    loaded |= {"peer_shift": {"cpu_usage": 0.0, "request_count": 0.1}}
    endpoints = (
        replica("checkout-0", **loaded),
        replica("checkout-1"),
        replica("checkout-2", latency_ms=296.0),
    )
    assert kinds(HealingInputs("checkout", endpoints, recommendation=HOLD)) == [
        (ActionKind.DRAIN_ENDPOINT, "checkout-2")
    ]


def test_decide_an_anomaly_of_memory_alone_alerts_but_drains_nothing() -> None:
    memory = {"anomaly_score": 0.94, "anomaly_metrics": ("memory_usage",)}
    assert kinds(HealingInputs("checkout", three(**memory), recommendation=HOLD)) == []
