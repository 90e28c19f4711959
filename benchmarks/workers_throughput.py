"""One-row predict throughput of `automatrix serve --workers 2` against `--workers 1`, in one run.

One model is registered in a temporary MLflow store (serving_bench's `register_model`), then
served three ways on 127.0.0.1: one worker; one worker in prometheus multiprocess mode (what
multiprocess metrics cost alone); and two workers (multiprocess mode, as `serve` sets it up).
Each is loaded by `wrk` with the same 8 connections of one-row
`POST /api/v2/neuroweaver/predict`; the servers take turns each round, and the median over the
rounds is reported, then the ratios. On this 2-core machine wrk itself takes part of a core.

    .venv/bin/python benchmarks/workers_throughput.py [--duration 10] [--rounds 3]

Needs `wrk` (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_bench import (  # noqa: E402
    BIN,
    SAMPLE,
    Result,
    environment,
    free_port,
    register_model,
    server,
    wrk,
)

PREDICT = "/api/v2/neuroweaver/predict"
ONE, MULTIPROCESS, TWO = "--workers 1", "--workers 1, multiprocess", "--workers 2"


def measure(args: argparse.Namespace, work: Path, env: dict[str, str]) -> dict[str, list[Result]]:
    """Every round's result per server, the servers taking turns within each round."""
    (work / "multiprocess").mkdir()
    servers = {
        ONE: (1, {}),
        MULTIPROCESS: (1, {"PROMETHEUS_MULTIPROC_DIR": str(work / "multiprocess")}),
        TWO: (2, {}),
    }
    found: dict[str, list[Result]] = {name: [] for name in servers}
    with ExitStack() as stack:
        targets = {}
        for i, (name, (n, extra)) in enumerate(servers.items()):
            port = free_port()
            command = [str(BIN / "automatrix"), "serve", "--port", str(port), "--workers", str(n)]
            ready = f"http://127.0.0.1:{port}/ready"
            log = work / f"api-{i}.log"
            process = stack.enter_context(server(command, {**env, **extra}, ready, log))
            targets[name] = (f"http://127.0.0.1:{port}{PREDICT}", process.pid)
        for round_ in range(args.rounds):
            for name, (url, pid) in targets.items():
                result = wrk(url, dict(SAMPLE), 1, args.duration, args.connections, work, pid)
                found[name].append(result)
                print(
                    f"round {round_ + 1}  {name:<26}{result.requests_per_s:>8.0f} req/s"
                    f"  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                    f"  {result.cpu_ms_per_request:.3f} CPU ms/req  errors {result.errors}",
                    flush=True,
                )
    return found


def report(found: dict[str, list[Result]], args: argparse.Namespace) -> None:
    print(f"\nmedian of {args.rounds} rounds of {args.duration} s, {args.connections} connections")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'errors':>8}")
    medians, cpus = {}, {}
    for name, results in found.items():
        medians[name] = statistics.median(r.requests_per_s for r in results)
        p50 = statistics.median(r.p50_ms for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        cpus[name] = cpu = statistics.median(r.cpu_ms_per_request for r in results)
        errors = sum(r.errors for r in results)
        print(f"{name:<28}{medians[name]:>10.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>12.3f}{errors:>8}")
    print(f"\none-row throughput, --workers 2 / --workers 1: {medians[TWO] / medians[ONE]:.2f}x")
    print(
        f"one worker, multiprocess / plain: {medians[MULTIPROCESS] / medians[ONE]:.2f}x throughput,"
        f" {cpus[MULTIPROCESS] / cpus[ONE]:.2f}x CPU per request"
    )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        work = Path(tmp)
        env = environment(work)
        print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}", flush=True)
        print("registering the model ...", flush=True)
        register_model(env)
        print("starting automatrix serve --workers 1 and --workers 2 ...", flush=True)
        report(measure(args, work, env), args)


if __name__ == "__main__":
    main()
