"""Forwarding over HTTP: one pooled aiohttp session, bounded timeouts and a cap on what is read back.

aiohttp rather than httpx, which the rest of the project uses as a client: httpx's pool walks
every open connection each time a request starts or ends, so a forward cost 1.9 ms of CPU with
16 calls outstanding and 11.6 ms with 512, against 0.17-0.29 ms here however many are open
(benchmarks/relay_transport.py). For a router, whose outstanding calls grow exactly when an
endpoint slows, a cost per call that grows with them turns a slowdown into an overload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from routing import Endpoint, TransportResponse
from serving.http.logs import request_id_var

# Only what the router reads (or the caller may want) is kept from an endpoint's answer.
KEPT_HEADERS = ("retry-after", "x-queue-depth", "content-type")


class ResponseTooLarge(RuntimeError):
    """The endpoint answered more than the allowed number of bytes; the call counts as failed."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A payload with extra request headers, e.g. the Idempotency-Key of a durable message."""

    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class HttpTransport:
    """`Transport` for the Router: POSTs the payload as JSON to the endpoint's registered URL."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
        max_response_bytes: int = 1_000_000,
        max_connections: int = 512,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_response_bytes = max_response_bytes
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that will run it.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=30.0)
            # No proxies from the environment: traffic goes to registered URLs only.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def __call__(
        self, endpoint: Endpoint, payload: Any, timeout_s: float
    ) -> TransportResponse:
        headers = {"content-type": "application/json"}
        request_id = request_id_var.get()
        if request_id is not None:  # the API request this forward serves, for the endpoint's logs
            headers["x-request-id"] = request_id
        if isinstance(payload, Envelope):
            headers.update(payload.headers)
            payload = payload.body
        timeout = aiohttp.ClientTimeout(
            total=timeout_s,
            sock_connect=min(self.connect_timeout_s, timeout_s),
            sock_read=min(self.read_timeout_s, timeout_s),
        )
        async with self._client().post(
            endpoint.url,
            data=orjson.dumps(payload),
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            raw = await self._read(response)
            kept = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
            return TransportResponse(
                response.status, decode_body(raw, kept.get("content-type")), kept
            )

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self.max_response_bytes:
            raise ResponseTooLarge(f"the answer declares {declared} bytes, over the limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ResponseTooLarge(f"the answer exceeds {self.max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """JSON when the endpoint says so (or it parses), else text; empty is None."""
    if not raw:
        return None
    if content_type is None or "json" in content_type:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", errors="replace")
