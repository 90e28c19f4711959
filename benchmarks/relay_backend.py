"""A small JSON backend for RelayCore's tests and benchmark: one process, one port on 127.0.0.1.

    python benchmarks/relay_backend.py --name a --delay-ms 5 [--workers 8] [--fail-status 503]
                                       [--record keys.log]

It prints `PORT <n>` once listening. Every POST (any path) waits for one of `--workers` slots,
sleeps the delay, and answers {"ok": true, "server": name, "id": payload["id"]}; with a fail
status it answers that status at once instead. `--record` appends each request's
Idempotency-Key (or "-"), payload id and X-Request-ID (or "-") to a file, flushed per line. POST /__control with
{"delay_ms": x, "fail_status": s | null} changes the behaviour while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

import uvicorn


class Backend:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.delay_s = args.delay_ms / 1000.0
        self.fail_status: int | None = args.fail_status
        self.slots = asyncio.Semaphore(args.workers)
        self.record = open(args.record, "a", buffering=1) if args.record else None  # noqa: SIM115

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = json.loads(body) if body else {}
        if scope["path"] == "/__control":
            self.delay_s = payload.get("delay_ms", self.delay_s * 1000.0) / 1000.0
            self.fail_status = payload.get("fail_status", self.fail_status)
            return await _answer(send, 200, {"ok": True})
        if self.fail_status is not None:
            return await _answer(send, self.fail_status, {"ok": False, "server": self.name})
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"-").decode()
        request_id = headers.get(b"x-request-id", b"-").decode()
        async with self.slots:
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
        if self.record is not None:
            self.record.write(f"{key} {payload.get('id', '-')} {request_id}\n")
        await _answer(send, 200, {"ok": True, "server": self.name, "id": payload.get("id")})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--fail-status", type=int, default=None)
    parser.add_argument("--record", default=None)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        Backend(args), log_level="warning", access_log=False, lifespan="on", backlog=2048
    )
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
