import pytest

from routing.endpoints import Endpoint, EndpointStats, InvalidEndpoint
from routing.windows import BucketCounter, DecayingAverage, PercentileRing


@pytest.mark.parametrize(
    "url", ["ftp://h/x", "file:///etc/passwd", "javascript:alert(1)", "127.0.0.1:9001", ""]
)
def test_create_endpoint_rejects_non_http_url(url: str) -> None:
    with pytest.raises(InvalidEndpoint, match="http"):
        Endpoint("a", url)


def test_create_endpoint_rejects_url_without_host() -> None:
    with pytest.raises(InvalidEndpoint, match="no host"):
        Endpoint("a", "http:///work")


def test_create_endpoint_rejects_malformed_port() -> None:
    with pytest.raises(InvalidEndpoint, match="malformed"):
        Endpoint("a", "http://h:99999/x")


def test_create_endpoint_accepts_http_and_https() -> None:
    assert Endpoint("a", "https://h.example/x").url == "https://h.example/x"
    assert Endpoint("b", "http://127.0.0.1:9001/work").name == "b"


def test_create_endpoint_rejects_empty_name() -> None:
    with pytest.raises(InvalidEndpoint, match="name"):
        Endpoint(" ", "http://h/")


def test_finish_call_leaves_failures_out_of_latency() -> None:
    stats = EndpointStats()
    stats.begin(0.0)
    stats.finish(0.0, 0.001, failed=True)
    assert stats.latency.empty and stats.error_rate() == 1.0 and stats.in_flight == 0


def test_recent_counts_the_calls_answered_well_lately() -> None:
    stats = EndpointStats()
    for t in range(60):
        stats.begin(float(t))
        stats.finish(float(t), 0.01, failed=t % 2 == 1)  # one call a second, every other fails
    # 30 answered well in 60 s; the window's oldest bucket (6 s) has just left.
    assert 27 <= stats.recent.total(60.0) <= 30
    assert stats.recent.total(600.0) == 0  # ten minutes without a call: nothing recent


def test_percentile_ring_keeps_only_last_samples() -> None:
    ring = PercentileRing(size=4)
    for sample in [100.0, 1.0, 2.0, 3.0, 4.0]:
        ring.add(sample)
    assert len(ring) == 4 and ring.percentile(99) == 4.0 and ring.percentile(50) == 2.0


def test_decaying_average_weights_samples_by_elapsed_time() -> None:
    avg = DecayingAverage(tau=1.0)
    avg.add(10.0, now=0.0)
    avg.add(0.0, now=1.0)
    assert avg.value() == pytest.approx(10.0 * 0.36788, rel=1e-4)


def test_decaying_average_fades_towards_target_without_samples() -> None:
    avg = DecayingAverage(tau=1.0)
    avg.add(10.0, now=0.0)
    assert avg.value_towards(2.0, now=100.0) == pytest.approx(2.0)


def test_bucket_counter_forgets_events_outside_window() -> None:
    counter = BucketCounter(window=10.0, buckets=10)
    counter.add(0.5, 3)
    counter.add(5.5, 2)
    assert counter.total(9.9) == 5 and counter.total(10.5) == 2 and counter.total(30.0) == 0


def test_silent_for_counts_from_last_answer_while_calls_are_in_flight() -> None:
    stats = EndpointStats()
    stats.begin(1.0)
    stats.begin(2.0)
    assert stats.silent_for(3.0) == 2.0  # the call begun at 1.0 has not answered
    stats.finish(3.0, 2.0, failed=False)
    assert stats.silent_for(3.5) == 0.5
    stats.finish(4.0, 2.0, failed=False)
    assert stats.silent_for(9.0) == 0.0  # nothing in flight, nothing overdue


def test_silent_for_restarts_when_a_call_is_taken_back() -> None:
    stats = EndpointStats()
    stats.begin(1.0)
    stats.begin(5.0)
    stats.abandon(6.0)  # maybe the call begun at 1.0: only 6.0 is a safe bound
    assert stats.silent_for(7.0) == 1.0
