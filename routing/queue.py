"""Bounded wait queue for messages when every endpoint is at its concurrency limit.

Priorities run from 0 (least urgent) to 9 (most urgent). Aging is linear: each ``aging_s``
seconds of waiting is worth one priority level, so a priority-0 message overtakes a newly
arrived priority-9 one after ``9 * aging_s`` seconds and nothing starves. Because every message
ages at the same rate, the order between two waiting messages never changes, and one static key
(``enqueued_at - priority * aging_s``, smaller first) gives it: a plain heap suffices.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from routing.errors import QueueFull

T = TypeVar("T")

PRIORITY_MIN = 0
PRIORITY_MAX = 9


def check_priority(priority: int) -> int:
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be in {PRIORITY_MIN}..{PRIORITY_MAX}, got {priority}")
    return priority


@dataclass(eq=False, slots=True)
class QueuedItem(Generic[T]):
    value: T
    priority: int
    enqueued_at: float
    deadline: float | None
    live: bool = True
    # Why it left the queue without being served: "expired" or "displaced".
    reason: str | None = None

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


@dataclass(slots=True)
class Popped(Generic[T]):
    item: QueuedItem[T] | None
    expired: list[QueuedItem[T]] = field(default_factory=list)


class PriorityQueue(Generic[T]):
    def __init__(self, capacity: int = 1000, aging_s: float = 1.0) -> None:
        if capacity < 1 or aging_s <= 0:
            raise ValueError("capacity must be >= 1 and aging_s > 0")
        self.capacity = capacity
        self.aging_s = aging_s
        self._heap: list[tuple[float, int, QueuedItem[T]]] = []
        self._by_priority: list[deque[QueuedItem[T]]] = [deque() for _ in range(PRIORITY_MAX + 1)]
        self._depth = [0] * (PRIORITY_MAX + 1)
        self._seq = 0
        self._pops: deque[float] = deque(maxlen=64)

    def __len__(self) -> int:
        return sum(self._depth)

    def depth_by_priority(self) -> dict[int, int]:
        return dict(enumerate(self._depth))

    def push(
        self, value: T, priority: int, now: float, deadline: float | None = None
    ) -> tuple[QueuedItem[T], list[QueuedItem[T]]]:
        """Queue ``value``; returns it and the messages it pushed out (expired or displaced).

        A full queue first drops expired messages, then displaces the newest message of the
        lowest priority below this one; if there is none, it raises QueueFull.
        """
        check_priority(priority)
        removed: list[QueuedItem[T]] = []
        if len(self) >= self.capacity:
            removed = self._purge_expired(now) or self._displace_below(priority)
        if len(self) >= self.capacity:
            raise QueueFull("queue is full", retry_after=self.retry_after_s(now))
        item = QueuedItem(value, priority, now, deadline)
        self._seq += 1
        heapq.heappush(self._heap, (now - priority * self.aging_s, self._seq, item))
        self._by_priority[priority].append(item)
        self._depth[priority] += 1
        return item, removed

    def pop(self, now: float, accept: Callable[[QueuedItem[T]], bool] | None = None) -> Popped[T]:
        """The most urgent live message, after aging; expired ones met on the way come back too.

        With ``accept``, the most urgent one it accepts: those it passes over keep their place.
        """
        popped: Popped[T] = Popped(None)
        skipped: list[tuple[float, int, QueuedItem[T]]] = []
        while self._heap:
            entry = heapq.heappop(self._heap)
            item = entry[2]
            if not item.live:
                continue
            if item.expired(now):
                self._take(item)
                item.reason = "expired"
                popped.expired.append(item)
                continue
            if accept is not None and not accept(item):
                skipped.append(entry)
                continue
            self._take(item)
            self._pops.append(now)
            popped.item = item
            break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return popped

    def remove(self, item: QueuedItem[T]) -> bool:
        """Withdraw a waiting message (its sender gave up); False if it already left."""
        if not item.live:
            return False
        self._take(item)
        self._compact_if_sparse()
        return True

    def retry_after_s(self, now: float) -> float:
        """How long until there is room: the queue length over the recent drain rate."""
        if len(self._pops) < 2 or self._pops[-1] <= self._pops[0]:
            return 1.0
        rate = (len(self._pops) - 1) / (self._pops[-1] - self._pops[0])
        return min(max(len(self) / rate, 0.1), 60.0)

    def _take(self, item: QueuedItem[T]) -> None:
        item.live = False
        self._depth[item.priority] -= 1
        lane = self._by_priority[item.priority]
        while lane and not lane[0].live:
            lane.popleft()

    def _purge_expired(self, now: float) -> list[QueuedItem[T]]:
        expired = [e[2] for e in self._heap if e[2].live and e[2].expired(now)]
        for item in expired:
            self._take(item)
            item.reason = "expired"
        self._compact_if_sparse()
        return expired

    def _displace_below(self, priority: int) -> list[QueuedItem[T]]:
        for level in range(PRIORITY_MIN, priority):
            lane = self._by_priority[level]
            while lane:
                item = lane.pop()
                if item.live:
                    item.live = False
                    self._depth[level] -= 1
                    item.reason = "displaced"
                    return [item]
        return []

    def _compact_if_sparse(self) -> None:
        # Lazy deletion leaves dead entries in the heap; rebuild once they dominate.
        if len(self._heap) > 2 * len(self) + 64:
            self._heap = [e for e in self._heap if e[2].live]
            heapq.heapify(self._heap)
            for level, lane in enumerate(self._by_priority):
                self._by_priority[level] = deque(i for i in lane if i.live)
