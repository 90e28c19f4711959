"""The benchmarks' load client, against a real backend process on loopback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.relaycore import Backend

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from loadgen import JsonPoster, ProtocolError  # noqa: E402

Start = Callable[..., Backend]


def _post_all(poster: JsonPoster, ids: range) -> list[tuple[int, object]]:
    async def run() -> list[tuple[int, object]]:
        try:
            return await asyncio.gather(*(poster.post("/work", {"id": i}) for i in ids))
        finally:
            await poster.aclose()

    return asyncio.run(run())


def test_concurrent_posts_each_get_their_own_answer(backends: Start) -> None:
    backend = backends("a", delay_ms=20, workers=8)
    poster = JsonPoster("127.0.0.1", backend.port)

    answers = _post_all(poster, range(100))

    assert [status for status, _ in answers] == [200] * 100
    assert [body["id"] for _, body in answers] == list(range(100))  # type: ignore[index]


def test_second_wave_reuses_the_first_waves_connections(backends: Start) -> None:
    backend = backends("a", delay_ms=20, workers=8)
    poster = JsonPoster("127.0.0.1", backend.port)

    async def waves() -> int:
        await asyncio.gather(*(poster.post("/work", {"id": i}) for i in range(20)))
        opened = poster.opened
        await asyncio.gather(*(poster.post("/work", {"id": i}) for i in range(20)))
        await poster.aclose()
        return poster.opened - opened

    assert asyncio.run(waves()) == 0


def test_an_answer_it_cannot_frame_is_an_error_not_a_misread() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run() -> None:
        server = await asyncio.start_server(chunked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(ProtocolError, match="Content-Length"):
                await JsonPoster("127.0.0.1", port).post("/work", {})

    asyncio.run(run())
