"""The benchmarks' load client: JSON POSTs over HTTP/1.1 keep-alive connections, plain asyncio.

Why not httpx: its connection pool (httpcore 1.0) walks every open connection each time a
request starts or ends, so a request costs more the more connections are open. Under an open
loop that feeds itself: a short hiccup leaves more requests outstanding, they open more
connections, each request costs more, and the client saturates its core. py-spy caught it in
routing_real.py: the load client at 100% of a core inside `_assign_requests_to_connections`
for 15 s, messages delayed by up to 19 s in the client, while the API process idled at 30%.
Those delays were counted as RelayCore's latency.

Here a request takes an idle connection from a stack or opens one, and puts it back when the
answer is read: the same cost however many are open. Answers must carry Content-Length
(uvicorn's JSON answers do); anything else is an error, never a silent misread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter, float]


class ProtocolError(RuntimeError):
    """The server's answer is not one this client reads (no Content-Length, bad status line)."""


class JsonPoster:
    """POSTs JSON to one host:port and returns (status, decoded body)."""

    def __init__(
        self, host: str, port: int, *, timeout_s: float = 60.0, idle_s: float = 2.0
    ) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.idle_s = idle_s  # below uvicorn's keep-alive (5 s), so the server never closes first
        self._idle: list[Connection] = []
        self.opened = 0

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = orjson.dumps(body)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        async with asyncio.timeout(self.timeout_s):
            reader, writer = await self._connection()
            try:
                writer.write(head + data)
                status, length, close = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                raw = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return status, orjson.loads(raw) if raw else None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < self.idle_s and not reader.at_eof():
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def aclose(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, whether the server closes the connection) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0]!r}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            fields[name.strip().lower()] = value.strip()
    if "content-length" not in fields:
        raise ProtocolError("the answer has no Content-Length")
    return int(parts[1]), int(fields["content-length"]), fields.get("connection") == "close"
