from routing.breaker import BreakerConfig, BreakerEvent, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def _breaker(events: list[BreakerEvent] | None = None, **config: float) -> CircuitBreaker:
    sink = events if events is not None else []
    return CircuitBreaker("a", BreakerConfig(**config), sink.append)  # type: ignore[arg-type]


def _fail(breaker: CircuitBreaker, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        breaker.record(now, failed=True, latency_s=0.01)


def _succeed(breaker: CircuitBreaker, times: int, now: float = 0.0, latency: float = 0.01) -> None:
    for _ in range(times):
        breaker.record(now, failed=False, latency_s=latency)


def test_trip_breaker_on_consecutive_failures() -> None:
    breaker = _breaker(consecutive_failures=3)
    _fail(breaker, 2)
    assert breaker.state(0.0) is CLOSED
    _fail(breaker, 1)
    assert breaker.state(0.0) is OPEN and not breaker.can_dispatch(0.0)


def test_reset_consecutive_failures_on_success() -> None:
    breaker = _breaker(consecutive_failures=3)
    _fail(breaker, 2)
    _succeed(breaker, 1)
    _fail(breaker, 2)
    assert breaker.state(0.0) is CLOSED


def test_trip_breaker_on_failure_rate_after_min_calls() -> None:
    breaker = _breaker(consecutive_failures=100, min_calls=10, failure_rate=0.5)
    for _ in range(5):
        _succeed(breaker, 1)
        _fail(breaker, 1)
    assert breaker.state(0.0) is OPEN


def test_keep_breaker_closed_below_min_calls() -> None:
    breaker = _breaker(consecutive_failures=100, min_calls=10, failure_rate=0.5)
    for _ in range(4):
        _succeed(breaker, 1)
        _fail(breaker, 1)
    assert breaker.state(0.0) is CLOSED


def test_trip_breaker_on_slow_call_rate() -> None:
    breaker = _breaker(min_calls=5, slow_call_s=1.0, slow_call_rate=0.8)
    _succeed(breaker, 1)
    _succeed(breaker, 4, latency=2.0)
    assert breaker.state(0.0) is OPEN


def test_enter_half_open_after_wait_without_sleeping() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=2.0)
    _fail(breaker, 1, now=10.0)
    assert breaker.state(11.9) is OPEN and breaker.retry_after_s(11.0) == 1.0
    assert breaker.state(12.0) is HALF_OPEN


def test_admit_limited_probes_when_half_open() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, half_open_probes=2)
    _fail(breaker, 1)
    for _ in range(2):
        assert breaker.can_dispatch(1.0)
        breaker.on_dispatch(1.0)
    assert not breaker.can_dispatch(1.0)


def test_close_breaker_after_successful_probes() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, probes_to_close=2)
    _fail(breaker, 1)
    breaker.on_dispatch(1.0)
    _succeed(breaker, 2, now=1.0)
    assert breaker.state(1.0) is CLOSED


def test_reopen_breaker_when_probe_fails() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0)
    _fail(breaker, 1)
    breaker.on_dispatch(1.0)
    _fail(breaker, 1, now=1.0)
    assert breaker.state(1.0) is OPEN


def test_reopen_breaker_when_probe_is_slow() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, slow_call_s=0.5)
    _fail(breaker, 1)
    _succeed(breaker, 1, now=1.0, latency=0.9)
    assert breaker.state(1.0) is OPEN


def test_grow_open_wait_exponentially_on_repeated_trips_up_to_cap() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, backoff=2.0, max_open_wait_s=5.0)
    now, waits = 0.0, []
    for _ in range(5):
        _fail(breaker, 1, now=now)
        waits.append(breaker.retry_after_s(now))
        now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_restart_backoff_after_lasting_recovery() -> None:
    breaker = _breaker(
        consecutive_failures=1, open_wait_s=1.0, max_open_wait_s=5.0, probes_to_close=1
    )
    _fail(breaker, 1, now=0.0)
    _fail(breaker, 1, now=1.0)  # probe fails: wait doubles
    _succeed(breaker, 1, now=3.0)  # probe succeeds: closed
    _fail(breaker, 1, now=100.0)  # long after: a new episode
    assert breaker.retry_after_s(100.0) == 1.0


def test_ignore_late_answers_while_open() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, probes_to_close=1)
    _fail(breaker, 1)
    _succeed(breaker, 5, now=0.5)
    assert breaker.state(0.5) is OPEN


def test_report_every_transition_as_event() -> None:
    events: list[BreakerEvent] = []
    breaker = _breaker(events, consecutive_failures=1, open_wait_s=1.0, probes_to_close=1)
    _fail(breaker, 1, now=0.0)
    breaker.on_dispatch(1.5)  # half-open noticed late, dated when it happened
    _fail(breaker, 1, now=1.5)
    breaker.on_dispatch(4.0)
    _succeed(breaker, 1, now=4.0)
    assert [(e.endpoint, e.old, e.new, e.at) for e in events] == [
        ("a", CLOSED, OPEN, 0.0),
        ("a", OPEN, HALF_OPEN, 1.0),
        ("a", HALF_OPEN, OPEN, 1.5),
        ("a", OPEN, HALF_OPEN, 3.5),
        ("a", HALF_OPEN, CLOSED, 4.0),
    ]
    assert "consecutive failures" in events[0].reason and "probe failed" in events[2].reason


def test_free_probe_slot_when_probe_is_abandoned() -> None:
    breaker = _breaker(consecutive_failures=1, open_wait_s=1.0, half_open_probes=1)
    _fail(breaker, 1)
    breaker.on_dispatch(1.0)
    breaker.on_abandon(1.0)
    assert breaker.can_dispatch(1.0)
