"""The Prometheus backfill without a server: `chunks` (the step grid, the points limit) and the
chunk loop, with the fetch, the store and the explanation of an empty query injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.samples import Sample
from monitoring.sources.backfill import backfill
from monitoring.sources.prometheus import CHUNK_POINTS, MAX_POINTS, RangeResult, chunks

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _instants(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    count = int((last - first) / step) + 1
    return [first + k * step for k in range(count)]


@pytest.mark.parametrize(
    ("start", "end", "step"),
    [
        (T0, T0 + 7 * DAY, MINUTE),
        (T0 + timedelta(seconds=17.5), T0 + 30 * DAY - timedelta(seconds=3), MINUTE),
        (T0, T0 + 2 * DAY, timedelta(seconds=1)),
        (T0 + timedelta(seconds=1), T0 + timedelta(hours=5), timedelta(seconds=7)),
    ],
)
def test_chunks_cover_the_window_exactly_on_the_step_grid_below_the_points_limit(
    start: datetime, end: datetime, step: timedelta
) -> None:
    parts = chunks(start, end, step)
    instants = [t for first, last in parts for t in _instants(first, last, step)]
    seconds = int(step.total_seconds())
    assert all(int(t.timestamp()) % seconds == 0 for t in instants)  # on the grid
    assert len(instants) == len(set(instants))  # no instant twice
    assert instants[0] - step < start <= instants[0]  # the first grid instant in the window
    assert instants[-1] <= end < instants[-1] + step  # and the last
    assert instants == _instants(instants[0], instants[-1], step)  # no gap between chunks
    assert all(len(_instants(f, la, step)) <= CHUNK_POINTS < MAX_POINTS for f, la in parts)


def test_chunks_split_a_week_at_one_point_a_minute_in_two() -> None:
    assert [len(_instants(f, la, MINUTE)) for f, la in chunks(T0, T0 + 7 * DAY, MINUTE)] == [
        10_000,
        81,
    ]


def test_chunks_of_the_same_window_again_are_the_same_instants() -> None:
    start = datetime.now(UTC) - DAY
    assert chunks(start, start + DAY, MINUTE) == chunks(start, start + DAY, MINUTE)


@pytest.mark.parametrize(
    ("step", "points", "message"),
    [
        (timedelta(seconds=1.5), CHUNK_POINTS, "whole number of seconds"),
        (timedelta(0), CHUNK_POINTS, "whole number of seconds"),
        (MINUTE, MAX_POINTS + 1, "points must be in"),
    ],
)
def test_chunks_refuse_a_step_or_size_prometheus_would_not_take(
    step: timedelta, points: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        chunks(T0, T0 + DAY, step, points)


def _reading(at: datetime, replica: str = "web-0") -> Sample:
    return Sample("web", at, 10.0, 20.0, 30.0, 1.0, 600.0, replica=replica)


class Server:
    """A fetch that fails for the chunks starting at `down`, and reports `empty` metrics."""

    def __init__(
        self, down: frozenset[datetime] = frozenset(), empty: list[str] | None = None
    ) -> None:
        self.down, self.empty = down, empty or []
        self.asked: list[tuple[datetime, datetime]] = []

    def fetch(self, first: datetime, last: datetime) -> RangeResult:
        self.asked.append((first, last))
        if first in self.down:
            raise ConnectionError("Prometheus at http://127.0.0.1:1 unreachable")
        readings = [_reading(t, r) for t in _instants(first, last, MINUTE) for r in ("a", "b")]
        return RangeResult(readings=readings, empty=self.empty, problems=["1 thing left out"])


def test_backfill_stores_each_chunk_on_its_own_and_records_the_whole_window() -> None:
    server, stored = Server(), []
    window = (T0, T0 + 7 * DAY)
    done = backfill(window, MINUTE, server.fetch, stored.append, lambda *_: "")
    assert server.asked == chunks(*window, MINUTE)
    assert [len(batch) for batch in stored] == [2 * 10_000, 2 * 81]
    assert done.reports == [None, None]  # what each store call returned
    assert done.end == window[1]
    assert done.replicas == {("web", "a"), ("web", "b")}
    assert done.missing == ["1 thing left out", "1 thing left out"]


def test_backfill_reports_a_failed_chunk_by_range_stores_the_rest_and_ends_before_it() -> None:
    window = (T0, T0 + 15 * DAY)  # three chunks at one point a minute
    parts = chunks(*window, MINUTE)
    server, stored = Server(down=frozenset({parts[1][0]})), []
    done = backfill(window, MINUTE, server.fetch, stored.append, lambda *_: "")
    assert len(stored) == 2  # the first and the third
    assert done.end == parts[0][1]  # the next run starts again at the failed chunk
    failed = [m for m in done.missing if "unreachable" in m]
    assert failed == [
        f"{parts[1][0].isoformat()} to {parts[1][1].isoformat()}: "
        "ConnectionError: Prometheus at http://127.0.0.1:1 unreachable"
    ]


def test_backfill_explains_an_empty_metric_once_not_once_per_chunk() -> None:
    server, explained = Server(empty=["memory_usage"]), []

    def explain(metric: str, first: datetime, last: datetime) -> str:
        explained.append((metric, first))
        return f"{metric}: returned no series"

    done = backfill((T0, T0 + 7 * DAY), MINUTE, server.fetch, lambda rows: None, explain)
    assert explained == [("memory_usage", T0)]
    assert done.missing.count("memory_usage: returned no series") == 1
