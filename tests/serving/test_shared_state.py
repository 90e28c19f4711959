"""The pure parts of sharing between processes: the rate limit's client, the hub's relay, and
the latency percentiles read from histogram buckets. The real processes are in
tests/production/test_shared_events.py and test_worker_metrics.py."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network
from typing import Any

import orjson
import pytest

from serving.ecosystem.analytics import _quantile
from serving.ecosystem.events import EventHub
from serving.http.ratelimit import client_address
from serving.settings import ServingSettings

PROXIES = [ip_network("10.0.0.0/8"), ip_network("192.0.2.7/32")]


def scope(peer: str, *forwarded: str) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"client": (peer, 5000), "headers": headers}


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert client_address(scope("198.51.100.1", "203.0.113.9"), []) == "198.51.100.1"


def test_client_address_from_untrusted_peer_ignores_forwarded_for() -> None:
    assert client_address(scope("198.51.100.1", "203.0.113.9"), PROXIES) == "198.51.100.1"


def test_client_address_behind_trusted_proxies_is_the_nearest_untrusted_hop() -> None:
    # The client wrote 1.1.1.1 itself; the proxies appended what they saw, nearest last.
    found = client_address(scope("192.0.2.7", "1.1.1.1, 203.0.113.9", "10.1.2.3"), PROXIES)
    assert found == "203.0.113.9"


def test_client_address_stops_at_a_malformed_hop() -> None:
    assert client_address(scope("192.0.2.7", "203.0.113.9, not-an-ip"), PROXIES) == "192.0.2.7"


def test_trusted_proxies_setting_rejects_a_bad_network() -> None:
    with pytest.raises(ValueError, match="IP addresses or CIDRs"):
        ServingSettings(trusted_proxies="10.0.0.0/8,nonsense")  # type: ignore[arg-type]
    assert ServingSettings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == [  # type: ignore[arg-type]
        ip_network("10.0.0.0/8"),
        ip_network("::1"),
    ]


def test_hub_relays_shared_events_and_skips_its_own_coming_back() -> None:
    async def scenario() -> tuple[list[str], list[str | None]]:
        hub, relayed = EventHub(), []
        hub.bind(asyncio.get_running_loop())
        hub.relay = relayed.append
        subscription = hub.subscribe()
        hub.publish("breaker", {"endpoint": "a"})
        hub.publish("snapshot", {"local": True})  # every process makes its own
        assert hub.receive(relayed[0]) is False  # its own publication, back from the broker
        other = orjson.loads(relayed[0]) | {"origin": "elsewhere:1:x"}
        assert hub.receive(orjson.dumps(other)) is True
        assert hub.receive(b"not json") is False
        received = [await subscription.get() for _ in range(3)]
        return relayed, received

    relayed, received = asyncio.run(scenario())
    assert [orjson.loads(m)["type"] for m in relayed] == ["breaker"]
    kinds = [(orjson.loads(m or "{}")["type"], orjson.loads(m or "{}")["origin"]) for m in received]
    assert [k for k, _ in kinds] == ["breaker", "snapshot", "breaker"]
    assert kinds[2][1] == "elsewhere:1:x"


def test_quantile_interpolates_within_the_bucket_that_holds_it() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(10.0)  # the 50th of 100 ends the first bucket
    assert _quantile(buckets, 0.7) == pytest.approx(55.0)  # halfway through 10-100 ms
    assert _quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
