"""The API's shadow log: the sampled share of keyed requests reaches the store, nothing else."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import cycle

import numpy as np
from sqlalchemy.engine import Engine

from monitoring.store.engine import open_store
from monitoring.store.shadow import read_requests
from serving.ecosystem.analytics import PredictionRecord
from serving.neuroweaver.shadow import ShadowRecorder, file_records
from serving.settings import ServingSettings

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _record(i: int, keyed: bool = True) -> PredictionRecord:
    keys = [("api", AT + timedelta(minutes=i)), ("db", AT + timedelta(minutes=i))]
    inputs = np.full((2, 5), float(i))
    return PredictionRecord(
        AT.timestamp() + i, "3", 2, keys if keyed else None, np.array([0.5, 0.25]), inputs
    )


def _stored(engine: Engine) -> list:  # type: ignore[type-arg]
    return read_requests(engine, "neuroweaver", "3", AT, AT + timedelta(days=1))


def test_the_sampled_share_of_keyed_requests_is_filed_with_the_champions_answers(
    settings: ServingSettings,
) -> None:
    engine = open_store(settings.database_url)
    draws = cycle([0.1, 0.6, 0.3, 0.9])  # with share 0.5: the first and third of every four
    recorder = ShadowRecorder(
        0.5, lambda batch: file_records(engine, "neuroweaver", batch), draw=lambda: next(draws)
    )
    for i in range(8):
        recorder.take(_record(i))
    recorder.take(_record(9, keyed=False))  # no keys: no true score can ever be joined
    asyncio.run(recorder.flush())
    rows = _stored(engine)
    assert recorder.sent == len(rows) == 8 and recorder.lost == 0
    assert sorted({r.inputs[0] for r in rows}) == [0.0, 2.0, 4.0, 6.0]
    assert {(r.service, r.champion_score) for r in rows} == {("api", 0.5), ("db", 0.25)}
    assert len({r.request for r in rows}) == 4  # the rows of one request share its id


def test_a_full_queue_or_a_writer_that_is_gone_loses_records_but_never_blocks() -> None:
    def gone(_: list[PredictionRecord]) -> None:
        raise RuntimeError("the shadow writer exited (1)")

    recorder = ShadowRecorder(1.0, gone, capacity=2)
    for i in range(3):
        recorder.take(_record(i))
    assert recorder.lost == 2  # the third did not fit
    asyncio.run(recorder.flush())
    assert recorder.lost == 6 and recorder.sent == 0


def test_nothing_is_kept_while_there_is_no_challenger() -> None:
    kept: list[PredictionRecord] = []
    recorder = ShadowRecorder(1.0, kept.extend)
    recorder.active = False
    recorder.take(_record(0))
    asyncio.run(recorder.flush())
    assert kept == [] and recorder.sent == 0
