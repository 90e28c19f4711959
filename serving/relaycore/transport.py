"""Forwarding over HTTP: one pooled httpx client, bounded timeouts and a cap on what is read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from routing import Endpoint, TransportResponse
from serving.logs import request_id_var

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

    def __init__(self, *, connect_timeout_s: float = 2.0, read_timeout_s: float = 10.0,
                 max_response_bytes: int = 1_000_000, max_connections: int = 512) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_response_bytes = max_response_bytes
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections, keepalive_expiry=30.0)
        # No redirects and no proxies from the environment: traffic goes to registered URLs only.
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False,
                                         timeout=httpx.Timeout(read_timeout_s,
                                                               connect=connect_timeout_s))

    async def __call__(self, endpoint: Endpoint, payload: Any, timeout_s: float) -> TransportResponse:
        headers = {"content-type": "application/json"}
        request_id = request_id_var.get()
        if request_id is not None:  # the API request this forward serves, for the endpoint's logs
            headers["x-request-id"] = request_id
        if isinstance(payload, Envelope):
            headers.update(payload.headers)
            payload = payload.body
        timeout = httpx.Timeout(min(self.read_timeout_s, timeout_s),
                                connect=min(self.connect_timeout_s, timeout_s))
        request = self._client.build_request("POST", endpoint.url, content=orjson.dumps(payload),
                                             headers=headers, timeout=timeout)
        response = await self._client.send(request, stream=True)
        try:
            raw = await self._read(response)
        finally:
            await response.aclose()
        kept = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
        return TransportResponse(response.status_code, decode_body(raw, kept.get("content-type")),
                                 kept)

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_response_bytes:
            raise ResponseTooLarge(f"the answer declares {declared} bytes, over the limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ResponseTooLarge(f"the answer exceeds {self.max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self._client.aclose()


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
