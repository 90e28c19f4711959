"""RelayCore's forwarding against httpx, side by side: CPU per forwarded call as calls pile up.

One backend process (benchmarks/relay_backend.py, 5 ms delay, never a queue) on 127.0.0.1.
Each transport forwards the same calls with 16, 128 and 512 of them outstanding; the figure is
the CPU time of this process per call (time.process_time), the median of alternating rounds.

- "httpx": the reference, an httpx.AsyncClient pool as RelayCore used before (same limits,
  timeouts and size cap);
- "relaycore": serving.relaycore.transport.HttpTransport (aiohttp).

    .venv/bin/python benchmarks/relay_transport.py [--calls 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from routing import Endpoint, TransportResponse  # noqa: E402
from serving.relaycore.transport import HttpTransport, decode_body  # noqa: E402

BACKEND = Path(__file__).resolve().parent / "relay_backend.py"
# Opening 512 connections at once takes the backend a while: both get the same patience.
CONNECT_S = 10.0


class HttpxReference:
    """Forwarding over one pooled httpx.AsyncClient: streamed read with a size cap."""

    def __init__(self, max_connections: int = 512, max_bytes: int = 1_000_000) -> None:
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            limits=limits,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(10.0, connect=CONNECT_S),
        )

    async def __call__(
        self, endpoint: Endpoint, payload: Any, timeout_s: float
    ) -> TransportResponse:
        request = self._client.build_request(
            "POST",
            endpoint.url,
            content=orjson.dumps(payload),
            headers={"content-type": "application/json"},
        )
        response = await self._client.send(request, stream=True)
        try:
            raw, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise RuntimeError("too large")
                raw.append(chunk)
        finally:
            await response.aclose()
        body = decode_body(b"".join(raw), response.headers.get("content-type"))
        return TransportResponse(response.status_code, body)

    async def aclose(self) -> None:
        await self._client.aclose()


async def cpu_per_call_us(transport: Any, url: str, outstanding: int, calls: int) -> float:
    endpoint = Endpoint("b", url)
    slots = asyncio.Semaphore(outstanding)

    async def one(i: int) -> None:
        async with slots:
            response = await transport(endpoint, {"id": i}, 10.0)
            assert response.status == 200, response

    try:
        await asyncio.gather(*(one(i) for i in range(outstanding)))  # connections open, warm
        started = time.process_time()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return (time.process_time() - started) / calls * 1e6
    finally:
        await transport.aclose()


def _ours() -> HttpTransport:
    return HttpTransport(connect_timeout_s=CONNECT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend = subprocess.Popen(
        [sys.executable, str(BACKEND), "--name", "b", "--delay-ms", "5", "--workers", "10000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert backend.stdout is not None
        url = f"http://127.0.0.1:{int(backend.stdout.readline().split()[1])}/work"
        print(
            f"CPU per forwarded call, median of {args.rounds} alternating rounds of "
            f"{args.calls} calls"
        )
        for outstanding in (16, 128, 512):
            found: dict[str, list[float]] = {"httpx": [], "relaycore": []}
            for _ in range(args.rounds):
                for name, make in (("httpx", HttpxReference), ("relaycore", _ours)):
                    found[name].append(
                        asyncio.run(cpu_per_call_us(make(), url, outstanding, args.calls))
                    )
            ref, ours = (statistics.median(found[n]) for n in ("httpx", "relaycore"))
            print(
                f"  {outstanding:4d} outstanding: httpx {ref:7.0f} us, relaycore {ours:6.0f} us,"
                f" relaycore/httpx {ours / ref:.2f}",
                flush=True,
            )
    finally:
        backend.kill()


if __name__ == "__main__":
    main()
