"""Micro-batching: concurrent predict requests share one forward pass.

A request's rows wait until every predict request in flight has queued its rows, or until the
window (about a millisecond) has passed, whichever comes first; a lone request never waits.
Small batches run on the event loop (a forward pass of a few rows takes tens of microseconds,
less than a hop to a thread); large ones run on one dedicated thread so the loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from serving.neuroweaver.models import LoadedModel

INLINE_ROWS = 64


@dataclass(frozen=True, slots=True)
class Answer:
    scores: np.ndarray
    model: LoadedModel


class MicroBatcher:
    def __init__(
        self,
        current: Callable[[], LoadedModel | None],
        window_s: float = 0.001,
        max_rows: int = 4096,
    ) -> None:
        self._current = current
        self.window_s = window_s
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[Answer]]] = []
        self._pending_rows = 0
        self._inflight = 0
        self._wake: asyncio.Event | None = None
        self._arrival: asyncio.Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future in self._pending:
            if not future.done():
                future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def enter(self) -> None:
        """Marks a predict request as on its way (so the batcher knows whom to wait for)."""
        self._inflight += 1

    def leave(self) -> None:
        self._inflight -= 1

    async def predict(self, rows: np.ndarray) -> Answer:
        """Scores for `rows`, computed with others' rows in one pass; call between enter/leave."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        assert self._wake is not None, "the batcher was not started"
        self._wake.set()
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            await self._gather()
            self._wake.clear()
            batch, self._pending, self._pending_rows = self._pending, [], 0
            if batch:
                await self._answer(batch)

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(self._pending) < self._inflight and self._pending_rows < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrival = loop.create_future()
            timer = loop.call_later(remaining, _settle, self._arrival)
            await self._arrival
            timer.cancel()

    async def _answer(self, batch: list[tuple[np.ndarray, asyncio.Future[Answer]]]) -> None:
        loaded = self._current()  # read once: the whole batch is answered by one model
        if loaded is None:
            _fail_all(batch, LookupError("no model is loaded"))
            return
        rows = batch[0][0] if len(batch) == 1 else np.concatenate([r for r, _ in batch])
        try:
            if len(rows) <= INLINE_ROWS:
                scores = loaded.model.predict(rows)
            else:
                loop = asyncio.get_running_loop()
                scores = await loop.run_in_executor(self._pool, loaded.model.predict, rows)
        except Exception as exc:
            _fail_all(batch, exc)
            return
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for part, future in batch:
            if not future.done():
                future.set_result(Answer(scores[start : start + len(part)], loaded))
            start += len(part)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail_all(batch: list[tuple[np.ndarray, asyncio.Future[Answer]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
