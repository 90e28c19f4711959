"""A bounded record of recently observed calls, replayable into a policy or a tuning run.

Optuna tuning of the adaptive policy replays what the endpoints really did instead of guessing
service-time distributions, and a policy switched in at run time starts warm instead of blind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from routing.policies import Policy


@dataclass(frozen=True, slots=True)
class Observation:
    at: float
    endpoint: str
    latency_s: float
    failed: bool
    ahead: int = 0  # calls already outstanding on the endpoint when this one was sent


class LatencyRecord:
    def __init__(self, size: int = 10_000) -> None:
        self._items: deque[Observation] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, observation: Observation) -> None:
        self._items.append(observation)

    def observations(self) -> list[Observation]:
        return list(self._items)

    def latencies_by_endpoint(self, include_failed: bool = False) -> dict[str, list[float]]:
        """Per endpoint, the latencies in the order seen: an empirical service-time sample."""
        out: dict[str, list[float]] = {}
        for o in self._items:
            if include_failed or not o.failed:
                out.setdefault(o.endpoint, []).append(o.latency_s)
        return out

    def forget(self, endpoint: str) -> None:
        self._items = deque((o for o in self._items if o.endpoint != endpoint), self._items.maxlen)


def replay(policy: Policy, observations: Iterable[Observation]) -> Policy:
    """Feed past observations to ``policy`` in order, so that it starts with what was learnt."""
    for o in observations:
        policy.observe(o.endpoint, o.latency_s, o.failed, o.at, o.ahead)
    return policy
