"""Runs the artillery load tests against a local AutoMatrix and prints the figures.

    .venv/bin/python benchmarks/load_artillery.py [--skip-ws]

Starts a local stack (benchmarks/stack.py: a registered @champion, `automatrix serve`, one
worker, all on 127.0.0.1), then:
- `load-test-api.yml`: the sustained request rate, p50/p99 latency and the error count;
- `load-test-websocket.yml`: the concurrent WebSocket clients reached, while a probe client here
  measures the update delay (how late each live snapshot arrives against LIVE_INTERVAL).
Artillery comes from the npm registry (`npx --yes artillery@latest`); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stack import local_stack  # noqa: E402

LIVE_INTERVAL_S = 1.0


def artillery(
    script: str, target: str, report: Path, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    command = [
        "npx",
        "--yes",
        "artillery@latest",
        "run",
        "--target",
        target,
        "--output",
        str(report),
    ]
    if variables:
        command += ["--variables", json.dumps(variables)]
    subprocess.run(
        [*command, str(ROOT / "benchmarks" / script)],
        check=True,
        cwd="/tmp",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    return json.loads(report.read_text())["aggregate"]


def api_figures(aggregate: dict[str, Any]) -> dict[str, Any]:
    counters, rates = aggregate.get("counters", {}), aggregate.get("rates", {})
    latency = aggregate.get("summaries", {}).get("http.response_time", {})
    codes = {k.rsplit(".", 1)[1]: v for k, v in counters.items() if k.startswith("http.codes.")}
    errors = sum(v for k, v in counters.items() if k.startswith("errors."))
    non_2xx = sum(v for code, v in codes.items() if not code.startswith("2"))
    return {
        "requests": counters.get("http.requests", 0),
        "rate_per_s": rates.get("http.request_rate"),
        "p50_ms": latency.get("median"),
        "p99_ms": latency.get("p99"),
        "codes": codes,
        "errors": errors,
        "non_2xx": non_2xx,
        "vusers_failed": counters.get("vusers.failed", 0),
    }


def probe_updates(url: str, seconds: float, gaps: list[float]) -> None:
    """Connects one client and records the time between consecutive snapshots."""
    import websockets

    async def run() -> None:
        async with websockets.connect(url, max_size=None) as socket:
            last = None
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if message.get("type") == "snapshot":
                    now = time.monotonic()
                    if last is not None:
                        gaps.append(now - last)
                    last = now

    asyncio.run(run())


def clients_seen(base_url: str, peak: list[int], stop: threading.Event) -> None:
    import re

    import httpx

    while not stop.wait(1.0):
        try:
            text = httpx.get(f"{base_url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        found = re.search(r"^automatrix_live_clients (\S+)", text, re.M)
        if found:
            peak[0] = max(peak[0], int(float(found.group(1))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-ws", action="store_true")
    args = parser.parse_args()
    with local_stack(LIVE_INTERVAL=str(LIVE_INTERVAL_S)) as stack:
        out = stack.root
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        minutes = [
            (now - timedelta(minutes=i)).isoformat().replace("+00:00", "Z") for i in range(60)
        ]
        api = api_figures(
            artillery("load-test-api.yml", stack.base_url, out / "api.json", {"ts": minutes})
        )
        print(json.dumps({"api": api}, indent=2), flush=True)
        if args.skip_ws:
            return
        ws_url = stack.base_url.replace("http://", "ws://") + "/api/v2/ws/ecosystem"
        gaps: list[float] = []
        peak, stop = [0], threading.Event()
        watcher = threading.Thread(
            target=clients_seen, args=(stack.base_url, peak, stop), daemon=True
        )
        probe = threading.Thread(target=probe_updates, args=(ws_url, 55, gaps), daemon=True)
        watcher.start()
        probe.start()
        aggregate = artillery("load-test-websocket.yml", ws_url, out / "ws.json")
        probe.join(timeout=90)
        stop.set()
        counters = aggregate.get("counters", {})
        delays = sorted(max(g - LIVE_INTERVAL_S, 0.0) * 1000 for g in gaps)
        ws = {
            "vusers_created": counters.get("vusers.created", 0),
            "vusers_failed": counters.get("vusers.failed", 0),
            "errors": {k: v for k, v in counters.items() if k.startswith("errors.")},
            "peak_concurrent_clients": peak[0],
            "updates_seen": len(gaps),
            "update_delay_ms_p50": round(statistics.median(delays), 1) if delays else None,
            "update_delay_ms_max": round(delays[-1], 1) if delays else None,
        }
        print(json.dumps({"websocket": ws}, indent=2))


if __name__ == "__main__":
    main()
