"""A tiny instrumented service for the ingestion tests: its own process, serving on 127.0.0.1 a
prometheus-client registry under the OpenTelemetry HTTP names and the process metrics.

It serves no real traffic; the test tells it what it served:
- `POST /record?status=500&seconds=0.3&count=10` observes that many requests at once;
- `POST /traffic?ok=3&errors=1&ok_s=0.1&error_s=0.3` observes, every 50 ms, `ok` 200s and
  `errors` 500s, each tick under the lock a scrape takes, so any two scrapes see whole ticks.
Traffic stops by itself after 120 s. Run: `python -m tests.support.otel_service PORT`;
`OtelService(requests=False)` (`PORT --no-requests`) serves the process metrics alone, as a
service that was never instrumented for HTTP would.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest

from tests.support.net import free_port

TICK_S = 0.05
TRAFFIC_LIMIT_S = 120.0
LABELS = ("http_request_method", "http_route", "http_response_status_code")


def _serve(port: int, requests: bool) -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    duration = Histogram(
        "http_server_request_duration_seconds",
        "Server time per request",
        LABELS,
        registry=registry if requests else None,
    )
    for status in ("200", "500"):  # both series exist from the first scrape on
        duration.labels("GET", "/work", status)
    lock = threading.Lock()

    def observe(status: str, seconds: float, count: int) -> None:
        child = duration.labels("GET", "/work", status)
        for _ in range(count):
            child.observe(seconds)

    def traffic(ok: int, errors: int, ok_s: float, error_s: float) -> None:
        until = time.monotonic() + TRAFFIC_LIMIT_S
        while time.monotonic() < until:
            with lock:
                observe("200", ok_s, ok)
                observe("500", error_s, errors)
            time.sleep(TICK_S)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                body = generate_latest(registry)
            self._answer(200, body)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/record":
                with lock:
                    observe(query["status"], float(query["seconds"]), int(query["count"]))
            else:
                args = (int(query["ok"]), int(query["errors"]))
                times = (float(query["ok_s"]), float(query["error_s"]))
                threading.Thread(target=traffic, args=(*args, *times), daemon=True).start()
            self._answer(204, b"")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class OtelService:
    """One service process; `url` is its base URL, `instance` its host:port."""

    def __init__(self, requests: bool = True) -> None:
        self.port = free_port()
        self.instance = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.instance}"
        flags = [] if requests else ["--no-requests"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.otel_service", str(self.port), *flags],
            stdout=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/metrics", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"the instrumented service on {self.port} did not start")

    def record(self, status: int, seconds: float, count: int) -> None:
        params = {"status": status, "seconds": seconds, "count": count}
        httpx.post(f"{self.url}/record", params=params, timeout=5).raise_for_status()

    def traffic(self, ok: int, errors: int, ok_s: float, error_s: float) -> None:
        params = {"ok": ok, "errors": errors, "ok_s": ok_s, "error_s": error_s}
        httpx.post(f"{self.url}/traffic", params=params, timeout=5).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), requests="--no-requests" not in sys.argv[2:])
