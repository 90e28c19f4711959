"""RelayCore's forwarding over real sockets: what it sends, what it reads back, and its time limits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from routing import Endpoint, TransportResponse
from serving.http.logs import request_id_var
from serving.relaycore.transport import Envelope, HttpTransport, ResponseTooLarge
from tests.support.relaycore import Backend

Start = Callable[..., Backend]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def forward(
    transport: HttpTransport, url: str, payload: Any, timeout_s: float = 5.0
) -> TransportResponse:
    async def once() -> TransportResponse:
        try:
            return await transport(Endpoint("e", url), payload, timeout_s)
        finally:
            await transport.aclose()

    return asyncio.run(once())


def serve_raw(answer: bytes) -> Callable[[HttpTransport, Any], TransportResponse]:
    """Forwards through `transport` to a one-shot server on 127.0.0.1 that sends `answer`."""

    def run(transport: HttpTransport, payload: Any) -> TransportResponse:
        async def once() -> TransportResponse:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with server:
                try:
                    return await transport(Endpoint("e", f"http://127.0.0.1:{port}/"), payload, 5.0)
                finally:
                    await transport.aclose()

        return asyncio.run(once())

    return run


def test_posts_the_payload_as_json_and_returns_status_body_and_the_headers_kept(
    backends: Start,
) -> None:
    response = forward(HttpTransport(), backends("a").url, {"id": 7})

    assert response.status == 200
    assert response.body == {"ok": True, "server": "a", "id": 7}
    assert response.headers["content-type"] == "application/json"


def test_an_envelope_adds_its_headers_and_the_request_id_travels_along(
    backends: Start, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.log"
    backend = backends("a", record=keys)

    token = request_id_var.set("req-42")
    try:
        forward(HttpTransport(), backend.url, Envelope({"id": 3}, {"Idempotency-Key": "msg-3"}))
    finally:
        request_id_var.reset(token)

    assert keys.read_text().split() == ["msg-3", "3", "req-42"]


def test_a_read_slower_than_the_read_timeout_fails_at_the_timeout(backends: Start) -> None:
    slow = backends("slow", delay_ms=3000)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        forward(HttpTransport(read_timeout_s=0.3), slow.url, {"id": 1})

    assert 0.25 < time.monotonic() - started < 2.0


def test_the_attempts_own_timeout_bounds_the_call_when_shorter(backends: Start) -> None:
    slow = backends("slow", delay_ms=3000)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        forward(HttpTransport(read_timeout_s=10.0), slow.url, {"id": 1}, timeout_s=0.3)

    assert time.monotonic() - started < 2.0


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose listen queue is full, so a new connection is never accepted."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(8):  # the kernel admits a connection or two beyond the backlog
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_a_connection_not_accepted_fails_at_the_connect_timeout() -> None:
    with unanswered_port() as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            forward(HttpTransport(connect_timeout_s=0.3), f"http://127.0.0.1:{port}/", {})
        assert 0.25 < time.monotonic() - started < 2.0


def test_a_refused_connection_fails_at_once() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    with pytest.raises(OSError):
        forward(HttpTransport(), f"http://127.0.0.1:{port}/", {})

    assert time.monotonic() - started < 1.0


def test_an_answer_declaring_more_than_the_limit_is_refused_unread() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100

    with pytest.raises(ResponseTooLarge, match="declares 100 bytes"):
        serve_raw(answer)(HttpTransport(max_response_bytes=10), {})


def test_a_streamed_answer_is_cut_off_once_past_the_limit() -> None:
    chunk = b"x" * 64
    body = b"".join(b"40\r\n" + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    with pytest.raises(ResponseTooLarge, match="exceeds 100 bytes"):
        serve_raw(answer)(HttpTransport(max_response_bytes=100), {})


def test_a_redirect_is_returned_as_it_is_never_followed() -> None:
    answer = (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/elsewhere\r\n"
        b"Content-Length: 0\r\n\r\n"
    )

    response = serve_raw(answer)(HttpTransport(), {})

    assert response.status == 307
    assert response.body is None


def test_a_plain_text_answer_comes_back_as_text() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nbusy"

    response = serve_raw(answer)(HttpTransport(), {})

    assert (response.status, response.body) == (503, "busy")
    assert response.headers["retry-after"] == "2"
