"""RelayCore's API on the real app: endpoints, refusals, auth, the queue limit, policy and status."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from tests.support.relaycore import Backend

RelayApp = Callable[..., Any]
MESSAGE = "/api/v2/relaycore/message"
ENDPOINTS = "/api/v2/relaycore/endpoints"


def test_add_endpoint_non_http_url_is_refused(relay_app: RelayApp) -> None:
    client = relay_app()
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1:9000", "http://"):
        response = client.post(ENDPOINTS, json={"name": "bad", "url": url})
        assert response.status_code == 422, url
    empty_service = {"name": "bad", "url": "http://127.0.0.1:1/", "service": ""}
    assert client.post(ENDPOINTS, json=empty_service).status_code == 422
    assert client.get(ENDPOINTS).json() == []


def test_add_endpoint_twice_returns_409(relay_app: RelayApp) -> None:
    client = relay_app()
    assert (
        client.post(ENDPOINTS, json={"name": "a", "url": "http://127.0.0.1:1/a"}).status_code == 201
    )
    assert (
        client.post(ENDPOINTS, json={"name": "a", "url": "http://127.0.0.1:1/b"}).status_code == 409
    )


def test_remove_endpoint_unknown_returns_404(relay_app: RelayApp) -> None:
    client = relay_app()
    assert client.delete(f"{ENDPOINTS}/nope").status_code == 404
    assert client.delete(ENDPOINTS, params={"name": "nope"}).status_code == 404


def test_send_message_reaches_only_registered_endpoints(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    registered, other = backends("registered"), backends("other")
    client = relay_app(endpoints={"registered": registered.url})
    answers = [client.post(MESSAGE, json={"payload": {"id": i}}).json() for i in range(20)]
    assert {a["endpoint"] for a in answers} == {"registered"}
    assert all(a["status"] == 200 and a["body"]["server"] == "registered" for a in answers)
    assert all(a["attempts"] == 1 and a["latency_ms"] > 0 for a in answers)
    listed = client.get(ENDPOINTS).json()
    assert [e["name"] for e in listed] == ["registered"] and other.url not in str(listed)


def test_send_message_after_removal_of_last_endpoint_returns_503(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a").url})
    assert client.delete(f"{ENDPOINTS}/a").status_code == 200
    response = client.post(MESSAGE, json={"payload": {}})
    assert response.status_code == 503
    assert "no endpoint" in response.json()["detail"]


def test_send_message_with_bad_input_returns_422(relay_app: RelayApp) -> None:
    client = relay_app()
    for body in (
        {"payload": {}, "priority": 10},
        {"payload": [1]},
        {"priority": 1},
        {"payload": {}, "deadline_ms": -1},
        {"payload": {}, "service": ""},  # an empty name is a mistake, not "no endpoint for it"
    ):
        assert client.post(MESSAGE, json=body).status_code == 422, body
    response = client.post(
        MESSAGE, content=b'{"payload": {"x": NaN}}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_mutating_relaycore_requests_without_api_key_are_refused(relay_app: RelayApp) -> None:
    client = relay_app(api_key="s3cret")
    calls = [
        ("post", "/api/v2/relaycore/stop", None),
        ("post", "/api/v2/relaycore/start", None),
        ("post", ENDPOINTS, {"name": "a", "url": "http://127.0.0.1:1/"}),
        ("delete", f"{ENDPOINTS}/a", None),
        ("put", "/api/v2/relaycore/policy", {"policy": "round_robin"}),
        ("post", MESSAGE, {"payload": {}}),
        ("post", "/api/v2/relaycore/optimize", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
        response = client.request(method, path, json=body, headers={"X-API-Key": "wrong"})
        assert response.status_code == 401, (method, path)
    assert client.get("/api/v2/relaycore/status").status_code == 200
    assert client.get(ENDPOINTS).status_code == 200


def test_mutating_relaycore_requests_with_api_key_are_served(relay_app: RelayApp) -> None:
    client = relay_app(api_key="s3cret")
    key = {"X-API-Key": "s3cret"}
    added = client.post(ENDPOINTS, json={"name": "a", "url": "http://127.0.0.1:1/"}, headers=key)
    assert added.status_code == 201
    bearer = {"Authorization": "Bearer s3cret"}
    assert (
        client.put(
            "/api/v2/relaycore/policy", json={"policy": "peak_ewma"}, headers=bearer
        ).status_code
        == 200
    )
    assert client.delete(f"{ENDPOINTS}/a", headers=key).status_code == 200


def test_send_message_to_full_queue_returns_429_with_retry_after(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    slow = backends("slow", delay_ms=1500)
    client = relay_app(endpoints={"slow": slow.url}, max_concurrency=1, queue_capacity=1)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(client.post, MESSAGE, json={"payload": {"id": i}, "priority": 5})
            for i in range(4)
        ]
        responses = [f.result(timeout=30) for f in futures]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429]
    for refused in (r for r in responses if r.status_code == 429):
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["reason"] == "QueueFull"


def test_send_message_to_failing_endpoint_returns_502_and_opens_breaker(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    failing = backends("failing", fail_status=503)
    client = relay_app(endpoints={"failing": failing.url})
    statuses = {client.post(MESSAGE, json={"payload": {}}).status_code for _ in range(8)}
    assert statuses <= {502, 503} and 502 in statuses
    status = client.get("/api/v2/relaycore/status").json()
    assert status["endpoints"][0]["breaker"] == "open"
    hub = client.app.state.automatrix.hub
    assert any(e["endpoint"] == "failing" and e["new"] == "open" for e in hub.recent("breaker"))


def test_send_message_while_stopped_returns_503_and_resumes_after_start(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a").url})
    assert client.post("/api/v2/relaycore/stop").json() == {"running": False}
    assert client.post(MESSAGE, json={"payload": {}}).status_code == 503
    assert client.post(MESSAGE, json={"payload": {}, "async": True}).status_code == 503
    assert client.get("/api/v2/relaycore/status").json()["running"] is False
    client.post("/api/v2/relaycore/start")
    assert client.post(MESSAGE, json={"payload": {}}).status_code == 200


def test_set_policy_switches_and_refuses_unknown(relay_app: RelayApp) -> None:
    client = relay_app()
    assert client.put("/api/v2/relaycore/policy", json={"policy": "least_request"}).json() == {
        "policy": "least_request"
    }
    assert client.get("/api/v2/relaycore/status").json()["policy"] == "least_request"
    assert client.put("/api/v2/relaycore/policy", json={"policy": "random"}).status_code == 422


def test_get_status_shows_endpoints_queue_and_counters(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a").url, "b": backends("b").url})
    for i in range(10):
        client.post(MESSAGE, json={"payload": {"id": i}, "priority": i % 10})
    status = client.get("/api/v2/relaycore/status").json()
    assert status["counters"]["routed"] == 10
    assert {e["name"] for e in status["endpoints"]} == {"a", "b"}
    first = status["endpoints"][0]
    assert {"in_flight", "p50_ms", "p99_ms", "error_rate", "breaker", "score"} <= first.keys()
    assert set(status["queue"]["by_priority"]) == {str(p) for p in range(10)}
    assert status["messages"] == {"queued": 0, "in_flight": 0, "delivered": 0, "failed": 0}
    components = client.get("/ai-ecosystem/status").json()["components"]
    assert components["relaycore"]["status"] == "up"


def test_send_service_message_only_to_its_endpoints(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    billing, search = backends("billing"), backends("search")
    client = relay_app(endpoints={"plain": search.url})  # RELAYCORE_ENDPOINTS: no service
    added = client.post(ENDPOINTS, json={"name": "b1", "url": billing.url, "service": "billing"})
    assert added.status_code == 201 and added.json()["service"] == "billing"
    answers = [
        client.post(MESSAGE, json={"payload": {"id": i}, "service": "billing"}).json()
        for i in range(10)
    ]
    assert {a["endpoint"] for a in answers} == {"b1"}
    anywhere = {
        client.post(MESSAGE, json={"payload": {"id": i}}).json()["endpoint"] for i in range(20)
    }
    assert anywhere <= {"b1", "plain"}


def test_send_message_for_service_without_endpoint_returns_503(
    relay_app: RelayApp, backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"plain": backends("plain").url})
    response = client.post(MESSAGE, json={"payload": {}, "service": "nobody"})
    assert response.status_code == 503
    found = response.json()
    assert found["reason"] == "NoEndpointForService" and "'nobody'" in found["detail"]


def test_restore_api_endpoints_after_restart_until_deleted(relay_app: RelayApp) -> None:
    first = relay_app()
    for name in ("kept", "dropped"):
        body = {
            "name": name,
            "url": f"http://127.0.0.1:1/{name}",
            "service": "svc",
            "max_concurrency": 7,
        }
        assert first.post(ENDPOINTS, json=body).status_code == 201
    assert first.delete(f"{ENDPOINTS}/dropped").status_code == 200
    restarted = relay_app()  # a new app on the same store
    assert restarted.get(ENDPOINTS).json() == [
        {
            "name": "kept",
            "url": "http://127.0.0.1:1/kept",
            "service": "svc",
            "max_concurrency": 7,
            "drained": False,
        }
    ]


def test_get_status_shows_each_endpoint_service(relay_app: RelayApp) -> None:
    client = relay_app(endpoints={"plain": "http://127.0.0.1:1/plain"})
    body = {"name": "b1", "url": "http://127.0.0.1:1/b1", "service": "billing"}
    assert client.post(ENDPOINTS, json=body).status_code == 201
    endpoints = client.get("/api/v2/relaycore/status").json()["endpoints"]
    assert {e["name"]: e["service"] for e in endpoints} == {"plain": None, "b1": "billing"}
