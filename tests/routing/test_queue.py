import pytest

from routing.errors import QueueFull
from routing.queue import PriorityQueue


def _drain(queue: PriorityQueue[str], now: float) -> list[str]:
    out = []
    while (item := queue.pop(now).item) is not None:
        out.append(item.value)
    return out


def test_pop_queue_most_urgent_priority_first() -> None:
    queue: PriorityQueue[str] = PriorityQueue(aging_s=100.0)
    for value, priority in [("low", 0), ("high", 9), ("mid", 5)]:
        queue.push(value, priority, now=0.0)
    assert _drain(queue, 0.0) == ["high", "mid", "low"]


def test_pop_queue_first_in_first_out_within_a_priority() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    for i, value in enumerate(["first", "second", "third"]):
        queue.push(value, 3, now=float(i))
    assert _drain(queue, 5.0) == ["first", "second", "third"]


def test_age_waiting_low_priority_ahead_of_newer_high_priority() -> None:
    queue: PriorityQueue[str] = PriorityQueue(aging_s=1.0)
    queue.push("old-low", 0, now=0.0)
    queue.push("new-high", 9, now=9.5)  # 9.5 s of waiting beats 9 levels
    assert _drain(queue, 10.0) == ["old-low", "new-high"]


def test_pop_queue_returns_expired_messages_apart_and_never_as_next() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("stale", 9, now=0.0, deadline=1.0)
    queue.push("fresh", 1, now=0.0, deadline=10.0)
    popped = queue.pop(now=2.0)
    assert popped.item is not None and popped.item.value == "fresh"
    assert [e.value for e in popped.expired] == ["stale"] and popped.expired[0].reason == "expired"


def test_push_full_queue_raises_queue_full_with_retry_after() -> None:
    queue: PriorityQueue[str] = PriorityQueue(capacity=2)
    queue.push("a", 5, now=0.0)
    queue.push("b", 5, now=0.0)
    with pytest.raises(QueueFull) as raised:
        queue.push("c", 5, now=0.0)
    assert raised.value.http_status == 429 and raised.value.retry_after == 1.0


def test_estimate_retry_after_from_drain_rate() -> None:
    queue: PriorityQueue[str] = PriorityQueue(capacity=4)
    for i in range(4):
        queue.push(str(i), 5, now=0.0)
    queue.pop(now=0.0)
    queue.pop(now=0.5)  # draining 2 per second
    queue.push("x", 5, now=0.5)
    queue.push("y", 5, now=0.5)
    with pytest.raises(QueueFull) as raised:
        queue.push("z", 5, now=0.5)
    assert raised.value.retry_after == pytest.approx(2.0)


def test_push_full_queue_displaces_newest_of_lower_priority() -> None:
    queue: PriorityQueue[str] = PriorityQueue(capacity=2)
    queue.push("low-old", 1, now=0.0)
    queue.push("low-new", 1, now=1.0)
    _, removed = queue.push("urgent", 8, now=2.0)
    assert [(r.value, r.reason) for r in removed] == [("low-new", "displaced")]
    assert _drain(queue, 2.0) == ["urgent", "low-old"]


def test_push_full_queue_drops_expired_before_displacing() -> None:
    queue: PriorityQueue[str] = PriorityQueue(capacity=2)
    queue.push("doomed", 1, now=0.0, deadline=1.0)
    queue.push("low", 1, now=0.0)
    _, removed = queue.push("urgent", 8, now=2.0)
    assert [(r.value, r.reason) for r in removed] == [("doomed", "expired")]


def test_report_queue_depth_per_priority() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    for priority in [0, 0, 9, 4]:
        queue.push("m", priority, now=0.0)
    depth = queue.depth_by_priority()
    assert depth[0] == 2 and depth[9] == 1 and depth[4] == 1 and len(depth) == 10


def test_remove_queued_message_frees_its_place() -> None:
    queue: PriorityQueue[str] = PriorityQueue(capacity=1)
    item, _ = queue.push("gone", 5, now=0.0)
    assert queue.remove(item) and not queue.remove(item)
    queue.push("next", 5, now=0.0)
    assert _drain(queue, 0.0) == ["next"]


@pytest.mark.parametrize("priority", [-1, 10])
def test_push_rejects_priority_outside_zero_to_nine(priority: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        PriorityQueue[str]().push("m", priority, now=0.0)
