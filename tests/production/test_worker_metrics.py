"""One instance, two workers (`automatrix serve --workers 2`), with REDIS_URL: what the whole
instance reports and shares, whichever worker a request reaches.

Every request below opens a fresh connection, so the kernel spreads them over both workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.instances import (
    REDIS_URL,
    Instance,
    Listener,
    logs,
    mlflow_template,
    push,
    services,
    start_instance,
)
from tests.support.models import SAMPLE
from tests.support.polling import wait_for
from tests.support.relaycore import Backend, start_backend

pytestmark = [pytest.mark.slow]
PREDICT = "/api/v2/neuroweaver/predict"
TRAIN = "/api/v2/neuroweaver/train"
TRUSTED_PROXY = "127.0.0.2"  # a loopback address the tests connect from to act as the proxy


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def analytics(instance: Instance) -> dict[str, Any]:
    return httpx.get(f"{instance.base}/api/v2/analytics/performance", timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def failing() -> Iterator[Backend]:
    backend = start_backend("failing", fail_status=500)
    yield backend
    backend.kill()


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory, failing: Backend) -> Iterator[Instance]:
    if not redis_reachable():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    folder = tmp_path_factory.mktemp("workers")
    env = {
        "DATABASE_URL": f"sqlite:///{folder / 'store.db'}",
        "REDIS_URL": REDIS_URL,
        "TRUSTED_PROXIES": TRUSTED_PROXY,
        "ENABLE_ML_TRAINING": "false",  # the train endpoint answers 403 at once, once let through
        "RATE_LIMIT_BURST": "2",
        "RATE_LIMIT_PER_MINUTE": "0.01",
        "RELAYCORE_ENDPOINTS": f"failing={failing.url}",
        "TMPDIR": str(folder),  # where `serve` makes its multiprocess metrics folder
    }
    started = start_instance(folder, "workers", mlflow_template(tmp_path_factory), env, workers=2)
    try:
        try:
            wait_for(lambda: not started.alive() or two_workers_ready(started), 120, 0.3)
            assert started.alive()
            assert len(list(folder.glob("automatrix-metrics-*"))) == 1
        except AssertionError as exc:
            raise AssertionError(f"the instance did not start:\n{logs([started])}") from exc
        yield started
    finally:
        started.stop()
    leftover = list(folder.glob("automatrix-metrics-*"))
    assert not leftover  # `serve` removes the multiprocess folder it made


def two_workers_ready(instance: Instance) -> bool:
    try:
        ready = httpx.get(f"{instance.base}/ready", timeout=5).status_code == 200
        return ready and len(analytics(instance)["workers"]) == 2
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def scraped(instance: Instance) -> dict[str, float]:
    """`/metrics` as {name{label=value,...}: value}, status labels summed away."""
    text = httpx.get(f"{instance.base}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "status")
            key = f"{sample.name}{{{labels}}}"
            found[key] = found.get(key, 0.0) + sample.value
    return found


def test_metrics_and_analytics_count_the_requests_of_both_workers(instance: Instance) -> None:
    before = analytics(instance)["workers"]
    sent = 60
    for _ in range(sent):
        httpx.post(f"{instance.base}{PREDICT}", json=SAMPLE, timeout=10).raise_for_status()

    metrics = scraped(instance)
    assert metrics[f"automatrix_http_requests_total{{method=POST,route={PREDICT}}}"] == sent
    wait_for(lambda: analytics(instance)["predictions"]["requests"] == sent, 5)
    report = analytics(instance)
    [predict] = [e for e in report["endpoints"] if e["endpoint"] == PREDICT]
    assert predict["requests"] == sent and predict["errors_5xx"] == 0
    assert predict["latency_ms"]["p50"] is not None
    assert report["predictions"]["rows"] == sent
    served = {w["pid"]: w["requests"] for w in report["workers"]}
    earlier = {w["pid"]: w["requests"] for w in before}
    assert len(served) == 2
    assert all(served[pid] > earlier.get(pid, 0) for pid in served)  # both workers served some
    wait_for(lambda: scraped(instance).get("automatrix_prediction_requests{}") == sent, 5)


def test_breaker_events_of_each_worker_reach_the_clients_of_both_once(instance: Instance) -> None:
    listeners = clients_of_both_workers(instance)
    try:
        origins = {listener.origin for listener in listeners}

        def every_worker_opened() -> bool:
            httpx.post(
                f"{instance.base}/api/v2/relaycore/message", json={"payload": {}}, timeout=10
            )
            return all(opened(listener) == origins for listener in listeners)

        wait_for(every_worker_opened, 30, 0.05)
        time.sleep(1.0)  # room for a duplicate to arrive, if one were coming
        for listener in listeners:  # each worker's openings, once each, on both workers' clients
            events = [e for e in listener.events("breaker") if e["payload"]["new"] == "open"]
            assert len({(e["origin"], e["at"]) for e in events}) == len(events)
    finally:
        for listener in listeners:
            listener.close()


def opened(listener: Listener) -> set[str]:
    return {e["origin"] for e in listener.events("breaker") if e["payload"]["new"] == "open"}


def clients_of_both_workers(instance: Instance) -> list[Listener]:
    """A WebSocket client on each worker (fresh connections until both have one)."""
    found: dict[str, Listener] = {}
    spare: list[Listener] = []
    for _ in range(30):
        listener = Listener.open(instance)
        if listener.origin in found:
            spare.append(listener)
        else:
            found[listener.origin] = listener
        if len(found) == 2:
            break
    for listener in spare:
        listener.close()
    assert len(found) == 2, "30 connections all reached one worker"
    return list(found.values())


def broker(listener: Listener) -> dict[str, Any]:
    """The event broker of the listener's worker, as its latest snapshot shows it."""
    return listener.events("snapshot")[-1]["payload"]["components"]["event_broker"]  # type: ignore[no-any-return]


def end_event_connections(channel_name: str) -> int:
    """CLIENT KILL for every Redis connection of this instance's event brokers."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        ours = [c for c in client.client_list() if c.get("name") == channel_name]
        for connection in ours:
            client.client_kill_filter(_id=connection["id"])
        return len(ours)
    finally:
        client.close()


def test_broken_redis_connections_reconnect_and_local_clients_keep_receiving(
    instance: Instance,
) -> None:
    listeners = clients_of_both_workers(instance)
    try:
        name = "automatrix-events-" + broker_channel_hash(instance)
        assert end_event_connections(name) >= 4  # a subscriber and a publisher per worker
        outage = {f"outage-{n}" for n in range(6)}
        for service in sorted(outage):  # fresh connections: both workers publish meanwhile
            push(instance, service)

        def delivered_locally() -> set[str]:  # each push reached the clients of its own worker
            return {s for x in listeners for s in services(x, x.origin)}

        wait_for(lambda: delivered_locally() == outage, 5)
        wait_for(lambda: all(broker(x)["status"] == "up" for x in listeners), 20, 0.2)
        expected = {f"after-{n}" for n in range(6)}
        for service in sorted(expected):
            push(instance, service)
        wait_for(lambda: all(expected <= set(services(x)) for x in listeners), 15)
        for listener in listeners:
            after = [s for s in services(listener) if s.startswith("after-")]
            assert len(after) == 3 * len(expected)  # three rows per push, each event once
    finally:
        for listener in listeners:
            listener.close()


def broker_channel_hash(instance: Instance) -> str:
    from serving.ecosystem.broker import instance_key

    return instance_key(instance.env["DATABASE_URL"]).split(":")[1]


def statuses(
    instance: Instance, path: str, count: int, source: str = "127.0.0.1", **headers: str
) -> list[int]:
    """`count` POSTs from `source`, each on its own connection; a `{i}` in a header is its index."""
    found = []
    for i in range(count):
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=10) as client:
            sent = {k.replace("_", "-"): v.format(i=i) for k, v in headers.items()}
            found.append(client.post(f"{instance.base}{path}", json={}, headers=sent).status_code)
    return found


def refused(found: list[int]) -> int:
    return sum(status == 429 for status in found)


def test_rate_limit_is_shared_by_both_workers(instance: Instance) -> None:
    before = {w["pid"]: w["requests"] for w in analytics(instance)["workers"]}
    found = statuses(instance, TRAIN, 10, source="127.0.0.4")
    assert len(found) - refused(found) == 2  # the burst, once for the instance, not per worker
    assert set(found) == {403, 429}

    def both_served() -> bool:
        after = {w["pid"]: w["requests"] for w in analytics(instance)["workers"]}
        return all(after[pid] > before.get(pid, 0) for pid in after)

    wait_for(both_served, 5)


def test_forwarded_for_from_an_untrusted_peer_is_ignored(instance: Instance) -> None:
    found = statuses(instance, TRAIN, 4, source="127.0.0.3", X_Forwarded_For="10.0.0.{i}")
    assert refused(found) == 2  # one client, whatever it claims to forward for


def test_forwarded_for_from_a_trusted_proxy_names_the_client(instance: Instance) -> None:
    distinct = statuses(instance, TRAIN, 4, source=TRUSTED_PROXY, X_Forwarded_For="10.1.0.{i}")
    assert refused(distinct) == 0  # four clients behind the proxy, each with its own burst
    same = statuses(instance, TRAIN, 3, source=TRUSTED_PROXY, X_Forwarded_For="10.2.0.9")
    assert same == [403, 403, 429]
    spoofed = statuses(
        instance, TRAIN, 3, source=TRUSTED_PROXY, X_Forwarded_For="10.3.0.{i}, 10.2.0.9"
    )
    assert refused(spoofed) == 3  # the proxy appended 10.2.0.9; what came before is the client's
