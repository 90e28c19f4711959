"""The Prometheus backfill loop: a window, chunk by chunk, each fetched and stored on its own.

The fetch of a chunk, the store and the explanation of an empty query are injected, so that the
loop is tested without Prefect and without a server; the flow passes its retried tasks. A long
backfill holds one chunk in memory, and an unreachable chunk costs only itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from monitoring.samples import Sample
from monitoring.sources.prometheus import RangeResult, chunks

Report = TypeVar("Report")
FetchChunk = Callable[[datetime, datetime], RangeResult]  # [first, last] instants: see `chunks`
Explain = Callable[[str, datetime, datetime], str]  # why a metric's query returned nothing


@dataclass
class Backfill(Generic[Report]):
    end: datetime  # where the next run should start: the window's end, or the first failed chunk
    reports: list[Report] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    replicas: set[tuple[str, str]] = field(default_factory=set)  # (service, replica) read


def backfill(
    window: tuple[datetime, datetime],
    step: timedelta,
    fetch: FetchChunk,
    store: Callable[[list[Sample]], Report],
    explain: Explain,
) -> Backfill[Report]:
    """Each chunk of `window` fetched and its replica rows stored in turn. A chunk whose fetch raises is listed
    in `missing` with its range and the rest go on; the window recorded for the next run then
    ends where the first failed chunk starts, so the next run fetches it again. A metric whose
    query returned nothing is explained once, not once per chunk."""
    outcome: Backfill[Report] = Backfill(end=window[0])
    explained: set[str] = set()
    failed = False
    for first, last in chunks(*window, step):
        try:
            result = fetch(first, last)
        except Exception as exc:  # the fetch's own retries are spent: report the chunk, go on
            failed = True
            outcome.missing.append(f"{first.isoformat()} to {last.isoformat()}: {_reason(exc)}")
            continue
        for metric in sorted(set(result.empty) - explained):
            outcome.missing.append(explain(metric, first, last))
            explained.add(metric)
        outcome.missing.extend(result.problems)
        outcome.reports.append(store(result.readings))
        outcome.replicas.update((r.service, r.replica) for r in result.readings)
        if not failed:
            outcome.end = last
    if not failed:
        outcome.end = window[1]
    return outcome


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
