"""The API's side of shadow: a sampled share of keyed predict requests, filed for @challenger.

The prediction log hands every filed record to `ShadowRecorder.take` after the answer has gone;
`take` only draws the sample and keeps a reference, and only while a `@challenger` exists
(`follow_challenger` checks the alias every MODEL_RELOAD_INTERVAL). Every `interval` seconds the
kept records go, in one small batch, to `send`: in the API, a `ShadowWriter`, a child process
that owns the database work, so that neither the insert nor the challenger's scoring (done by
the shadow review, in the orchestration flow) holds this process's interpreter. Under overload,
or while the writer is gone, records are counted as lost, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import numpy as np
from sqlalchemy.engine import Engine

from monitoring.neuroweaver import registry
from monitoring.store.shadow import ShadowRequest, record_requests
from serving.ecosystem.analytics import PredictionRecord

log = logging.getLogger(__name__)
Send = Callable[[list[PredictionRecord]], None]


class ShadowRecorder:
    """Samples `share` of keyed predict requests and hands them to `send` in batches."""

    def __init__(
        self,
        share: float,
        send: Send,
        capacity: int = 20_000,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.share = share
        self.active = True  # false while the registry holds no @challenger
        self._send = send
        self._capacity = capacity
        self._draw = draw
        self._queue: list[PredictionRecord] = []
        self.sent = 0
        self.lost = 0

    def take(self, record: PredictionRecord) -> None:
        if not self.active or record.keys is None or record.inputs is None:
            return
        if self._draw() >= self.share:
            return
        if len(self._queue) >= self._capacity:
            self.lost += record.rows
            return
        self._queue.append(record)

    async def run(self, interval: float = 0.05) -> None:
        """Small batches often: the cost is spread thin instead of stalling a request now and then."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self._send, batch)
        except Exception as exc:  # a writer that is gone must not stop the API, nor the loop
            self.lost += sum(record.rows for record in batch)
            log.warning("shadow log: %d records lost: %s", len(batch), exc)
            return
        self.sent += sum(record.rows for record in batch)


async def follow_challenger(recorder: ShadowRecorder, model: str, interval: float) -> None:
    """Keeps `recorder.active` to whether `model@challenger` exists; a registry error keeps it."""
    while True:
        try:
            version = await asyncio.to_thread(registry.alias_version, model, registry.CHALLENGER)
            recorder.active = version is not None
        except Exception as exc:  # the registry being down changes nothing here
            log.warning("shadow: cannot read %s@challenger: %s", model, exc)
        await asyncio.sleep(interval)


def file_records(engine: Engine, model: str, batch: list[PredictionRecord]) -> int:
    """Stores the rows of `batch` in the shadow log; returns how many."""
    rows = [row for record in batch for row in shadow_rows(model, record)]
    record_requests(engine, rows)
    return len(rows)


def shadow_rows(model: str, record: PredictionRecord) -> list[ShadowRequest]:
    """One keyed record's rows, as the shadow log stores them (one request id for all)."""
    if record.keys is None or record.inputs is None:
        return []
    request = uuid.uuid4().hex
    at = datetime.fromtimestamp(record.at, UTC)
    return [
        ShadowRequest(model, request, service, moment, inputs, record.version, score, at)
        for (service, moment), inputs, score in zip(
            record.keys, record.inputs.tolist(), record.scores.tolist(), strict=True
        )
    ]


def pack(batch: list[PredictionRecord]) -> bytes:
    """The batch as the writer reads it: plain tuples and raw array bytes, cheap to pickle (the
    records themselves cost several times more, on the API's interpreter)."""
    plain = [
        (r.at, r.version, r.rows, r.keys, r.scores.tobytes(), r.inputs.tobytes())
        for r in batch
        if r.keys is not None and r.inputs is not None
    ]
    return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            at, version, rows, keys, np.frombuffer(scores), np.frombuffer(inputs).reshape(rows, -1)
        )
        for at, version, rows, keys, scores, inputs in pickle.loads(data)
    ]


class ShadowWriter:
    """A child process that files the batches it is sent; `send` raises once it is gone."""

    def __init__(self, database_url: str, model: str) -> None:
        context = multiprocessing.get_context("spawn")  # never a fork of a torch-laden process
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_write_forever, args=(child, database_url, model), daemon=True,
            name="automatrix-shadow-writer",
        )  # fmt: skip
        self._process.start()
        child.close()

    def send(self, batch: list[PredictionRecord]) -> None:
        if not self._process.is_alive():
            raise RuntimeError(f"the shadow writer exited ({self._process.exitcode})")
        self._conn.send_bytes(pack(batch))

    def close(self) -> None:
        self._conn.close()  # the child's recv sees EOF and it returns
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()


def _write_forever(conn: Connection, database_url: str, model: str) -> None:
    import os

    from monitoring.store.engine import open_store

    os.nice(19)  # the predict path comes first: the writer takes only the CPU it leaves
    engine = open_store(database_url)
    while True:
        try:
            batch = unpack(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            file_records(engine, model, batch)
        except Exception as exc:  # one bad batch is lost, not the writer
            log.warning("shadow writer: %d records lost: %s", len(batch), exc)
