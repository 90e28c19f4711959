"""Soak: mixed load on a local AutoMatrix for `--minutes` (default 10); zero 5xx and flat memory.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 8] [--ws-clients 20]

The load, all on 127.0.0.1: one-row predictions, metric pushes, messages routed through RelayCore
to a local backend (benchmarks/relay_backend.py), and WebSocket clients on the live feed that
reconnect when dropped. It prints the API's RSS each minute and a summary; the exit code is 1
on any 5xx or transport error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stack import Stack, local_stack  # noqa: E402

SAMPLE = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.ws_messages = 0
        self.ws_connects = 0


async def http_worker(
    client: httpx.AsyncClient, kind: str, tally: Tally, until: float, n: int
) -> None:
    i = 0
    while time.monotonic() < until:
        i += 1
        try:
            if kind == "predict":
                response = await client.post("/api/v2/neuroweaver/predict", json=SAMPLE)
            elif kind == "push":
                at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
                    minutes=i % 1440
                )
                response = await client.post(
                    "/api/v2/metrics",
                    json={
                        "samples": [{"service": f"soak-{n}", "timestamp": at.isoformat(), **SAMPLE}]
                    },
                )
            else:
                response = await client.post(
                    "/api/v2/relaycore/message", json={"payload": {"id": i}, "priority": i % 10}
                )
            tally.statuses[(kind, response.status_code)] += 1
        except httpx.HTTPError as exc:
            tally.errors[f"{kind}: {type(exc).__name__}"] += 1


async def ws_client(url: str, tally: Tally, until: float) -> None:
    import websockets

    while time.monotonic() < until:
        try:
            async with websockets.connect(url, max_size=None, open_timeout=10) as socket:
                tally.ws_connects += 1
                while time.monotonic() < until:
                    try:
                        await asyncio.wait_for(
                            socket.recv(), timeout=max(until - time.monotonic(), 0.1)
                        )
                        tally.ws_messages += 1
                    except TimeoutError:
                        break
        except Exception as exc:  # a dropped client reconnects, as the dashboard does
            tally.errors[f"ws: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)


async def monitor(stack: Stack, until: float, rss: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        rss.append((round((time.monotonic() - started) / 60, 1), round(stack.rss_mb(), 1)))
        print(json.dumps({"minute": rss[-1][0], "rss_mb": rss[-1][1]}), flush=True)
        await asyncio.sleep(min(60.0, max(until - time.monotonic(), 0.1)))
    rss.append((round((time.monotonic() - started) / 60, 1), round(stack.rss_mb(), 1)))


async def soak(
    stack: Stack, minutes: float, concurrency: int, ws_clients: int
) -> dict[str, object]:
    tally = Tally()
    rss: list[tuple[float, float]] = []
    limits = httpx.Limits(max_connections=concurrency * 3)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30, limits=limits) as client:
        for _ in range(50):  # warm-up, so that the first RSS figure is the served state
            await client.post("/api/v2/neuroweaver/predict", json=SAMPLE)
        until = time.monotonic() + minutes * 60
        ws_url = stack.base_url.replace("http://", "ws://") + "/api/v2/ws/ecosystem"
        jobs = [
            http_worker(client, kind, tally, until, n)
            for n in range(concurrency)
            for kind in ("predict", "push", "route")
        ]
        jobs += [ws_client(ws_url, tally, until) for _ in range(ws_clients)]
        started = time.monotonic()
        await asyncio.gather(monitor(stack, until, rss), *jobs)
        elapsed = time.monotonic() - started
    total = sum(tally.statuses.values())
    server_errors = sum(n for (_, status), n in tally.statuses.items() if status >= 500)
    return {
        "minutes": minutes,
        "requests": total,
        "rate_per_s": round(total / elapsed, 1),
        "statuses": {f"{k} {s}": n for (k, s), n in sorted(tally.statuses.items())},
        "5xx": server_errors,
        "transport_errors": dict(tally.errors),
        "ws_clients": ws_clients,
        "ws_connects": tally.ws_connects,
        "ws_messages": tally.ws_messages,
        "rss_mb_start": rss[0][1],
        "rss_mb_end": rss[-1][1],
        "rss_mb_max": max(r for _, r in rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP loops per kind of request")
    parser.add_argument("--ws-clients", type=int, default=20)
    args = parser.parse_args()
    with local_stack(RELAYCORE_HINT_INTERVAL_S="5") as stack:
        summary = asyncio.run(soak(stack, args.minutes, args.concurrency, args.ws_clients))
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["5xx"] or summary["transport_errors"] else 0)


if __name__ == "__main__":
    main()
