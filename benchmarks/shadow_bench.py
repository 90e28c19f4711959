"""What shadow costs the predict path: SHADOW_SHARE=1 against SHADOW_SHARE=0, side by side.

One NeuroWeaver champion (also @challenger) is registered in a temporary MLflow store and served by two
`automatrix serve` processes (one worker each, 127.0.0.1) that differ only in SHADOW_SHARE. The
same load posts one keyed row (with `service` and `timestamp`, so that every request is filed)
to each in turn, for `--rounds` rounds: first open loop at a fixed `--rate` (a busy service, not
a saturated one), then saturated by `wrk` (8 connections); the shadowing server's filed
rows are counted in its store at the end. It prints each round, the median p99 of each, and
their ratios (target: at most 1.10, shadow adding at most 10% to the p99).

    nice -n 10 .venv/bin/python benchmarks/shadow_bench.py [--duration 10] [--rounds 5]

Needs `wrk` (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import JsonPoster, ProtocolError
from serving_bench import BIN, SAMPLE, Result, environment, free_port, register_model, server, wrk

KEYED = {**SAMPLE, "service": "checkout", "timestamp": "2026-12-04T12:00:00+00:00"}
NAMES = ("shadow off (SHADOW_SHARE=0)", "shadow on (SHADOW_SHARE=1)")


def rounds(
    urls: dict[str, tuple[str, int]], args: argparse.Namespace, work: Path
) -> dict[str, list[Result]]:
    found: dict[str, list[Result]] = {name: [] for name in urls}
    for round_ in range(args.rounds):
        order = list(urls) if round_ % 2 == 0 else list(reversed(urls))  # neither always goes first
        for name in order:
            url, pid = urls[name]
            result = wrk(url, KEYED, 1, args.duration, args.connections, work, pid)
            found[name].append(result)
            print(
                f"round {round_ + 1} {name:<30}{result.requests_per_s:>8.0f} req/s"
                f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  errors {result.errors}",
                flush=True,
            )
    return found


async def fixed_rate(url: str, rate: float, duration: float) -> tuple[float, float, int]:
    """Open loop at `rate` requests/s: (p50 ms, p99 ms, errors), each latency counted from the
    moment its request was due, so a stall shows on every request it delays."""
    parsed = urlsplit(url)
    poster = JsonPoster(parsed.hostname or "127.0.0.1", parsed.port or 80, timeout_s=10)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            status, _ = await poster.post(parsed.path, KEYED)
        except (OSError, TimeoutError, ProtocolError):
            status = 0
        errors += status != 200
        latencies.append((loop.time() - due) * 1000)

    start = loop.time() + 0.5
    count = int(rate * duration)
    await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    await poster.aclose()
    p50, p99 = (
        statistics.quantiles(latencies, n=100)[49],
        statistics.quantiles(latencies, n=100)[98],
    )
    return p50, p99, errors


def paced(urls: dict[str, tuple[str, int]], args: argparse.Namespace) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in urls}
    for round_ in range(args.rounds):
        order = list(urls) if round_ % 2 == 0 else list(reversed(urls))
        for name in order:
            p50, p99, errors = asyncio.run(fixed_rate(urls[name][0], args.rate, args.duration))
            found[name].append(p99)
            print(
                f"round {round_ + 1} {name:<30}{args.rate:>8.0f} req/s"
                f"  p50 {p50:.2f} ms  p99 {p99:.2f} ms  errors {errors}",
                flush=True,
            )
    return found


def filed_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM shadow_requests").fetchone()[0])


def report_paced(found: dict[str, list[float]], rate: float) -> None:
    off, on = (statistics.median(found[name]) for name in NAMES)
    print(
        f"\nat a fixed {rate:.0f} requests/s (open loop): median p99 {off:.2f} ms without shadow,"
    )
    print(f"{on:.2f} ms with it: {on / off:.3f} (target <= 1.10)")


def report(found: dict[str, list[Result]], filed: int) -> None:
    print(f"\n{'server':<32}{'median req/s':>13}{'median p50':>12}{'median p99':>12}{'errors':>8}")
    medians = {}
    for name, results in found.items():
        p99 = statistics.median(r.p99_ms for r in results)
        medians[name] = p99
        print(
            f"{name:<32}{statistics.median(r.requests_per_s for r in results):>13.0f}"
            f"{statistics.median(r.p50_ms for r in results):>12.2f}{p99:>12.2f}"
            f"{sum(r.errors for r in results):>8}"
        )
    off, on = (medians[name] for name in NAMES)
    print(f"\nrows filed for the shadow review: {filed}")
    print(f"p99 with shadow at 100% / without: {on / off:.3f} (target <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the paced load")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp:
        work = Path(tmp)
        env = environment(work)
        print("registering the model ...", flush=True)
        register_model(env)
        # A challenger to shadow: the API files requests only while one exists.
        alias = "from mlflow import MlflowClient as C; C().set_registered_model_alias("
        alias += "'neuroweaver', 'challenger', '1')"
        subprocess.run([sys.executable, "-c", alias], env=env, check=True)
        ports = {name: free_port() for name in NAMES}
        envs = {
            NAMES[0]: {**env, "SHADOW_SHARE": "0", "DATABASE_URL": f"sqlite:///{work / 'off.db'}"},
            NAMES[1]: {**env, "SHADOW_SHARE": "1", "DATABASE_URL": f"sqlite:///{work / 'on.db'}"},
        }

        def start(name: str):  # type: ignore[no-untyped-def]
            command = [
                str(BIN / "automatrix"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[name]),
            ]
            ready = f"http://127.0.0.1:{ports[name]}/ready"
            return server(command, envs[name], ready, work / f"{ports[name]}.log")

        print("starting both servers ...", flush=True)
        with start(NAMES[0]) as off, start(NAMES[1]) as on:
            urls = {
                NAMES[0]: (
                    f"http://127.0.0.1:{ports[NAMES[0]]}/api/v2/neuroweaver/predict",
                    off.pid,
                ),
                NAMES[1]: (
                    f"http://127.0.0.1:{ports[NAMES[1]]}/api/v2/neuroweaver/predict",
                    on.pid,
                ),
            }
            print(f"-- at a fixed rate of {args.rate:.0f} requests/s --", flush=True)
            steady = paced(urls, args)
            print("-- saturated: wrk, 8 connections --", flush=True)
            found = rounds(urls, args, work)
        report_paced(steady, args.rate)
        report(found, filed_rows(work / "on.db"))


if __name__ == "__main__":
    main()
