"""OIP infer against `mlflow models serve`, side by side: one NeuroWeaver row per request.

The model is registered once in a temporary MLflow store (serving_bench.register_model) and
served two ways, one worker each, on 127.0.0.1: `mlflow models serve` (`/invocations`) and
`automatrix serve` (`POST /v2/models/neuroweaver/infer`, a JSON tensor of shape [1, 5]). The same
client (`wrk`, 8 connections) loads each in turns; the best of `--rounds` rounds is kept. It
prints requests/s, p50/p99, errors and server CPU per request, then the ratio (target >= 10x).

    nice -n 10 .venv/bin/python benchmarks/oip_bench.py [--duration 10] [--rounds 3]

Needs `wrk` (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_bench import (
    BIN,
    SAMPLE,
    Result,
    environment,
    free_port,
    register_model,
    server,
    wrk,
)

ROW = [
    SAMPLE[m]
    for m in ("cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count")
]
INFER = {"inputs": [{"name": "metrics", "datatype": "FP32", "shape": [1, 5], "data": ROW}]}


def measure(
    targets: dict[str, tuple[str, dict[str, Any], int]], args: argparse.Namespace, work: Path
) -> dict[str, Result]:
    best: dict[str, Result] = {}
    for round_ in range(args.rounds):
        for name, (url, body, pid) in targets.items():
            result = wrk(url, body, 1, args.duration, args.connections, work, pid)
            print(
                f"round {round_ + 1} {name:<24}{result.requests_per_s:>9.0f} req/s"
                f"  p99 {result.p99_ms:.2f} ms  errors {result.errors}",
                flush=True,
            )
            if name not in best or result.requests_per_s > best[name].requests_per_s:
                best[name] = result
    return best


def report(best: dict[str, Result], args: argparse.Namespace) -> None:
    print(f"\nbest of {args.rounds} rounds of {args.duration} s, {args.connections} connections")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/req':>12}")
    for name, r in best.items():
        print(
            f"{name:<28}{r.requests_per_s:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
            f"{r.cpu_ms_per_request:>12.3f}"
        )
    ours, theirs = best["automatrix OIP infer"], best["mlflow models serve"]
    print(
        f"\nOIP infer, one row: {ours.requests_per_s / theirs.requests_per_s:.1f}x the requests/s"
        f" of mlflow models serve (target >= 10x), p99 {ours.p99_ms / theirs.p99_ms:.3f} of its,"
        f" {theirs.cpu_ms_per_request / ours.cpu_ms_per_request:.1f}x less server CPU per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="oip-bench-") as tmp:
        work = Path(tmp)
        env = environment(work)
        print("registering the model ...", flush=True)
        register_model(env)
        mlflow_port, api_port = free_port(), free_port()
        mlflow_cmd = [
            str(BIN / "mlflow"),
            *("models", "serve", "-m", "models:/neuroweaver@champion", "--env-manager", "local"),
            *("-h", "127.0.0.1", "-p", str(mlflow_port), "-w", "1"),
        ]
        api_cmd = [str(BIN / "automatrix"), "serve", "--host", "127.0.0.1", "--port", str(api_port)]
        print("starting mlflow models serve and automatrix serve ...", flush=True)
        with (
            server(
                mlflow_cmd, env, f"http://127.0.0.1:{mlflow_port}/ping", work / "mlflow.log"
            ) as theirs,
            server(api_cmd, env, f"http://127.0.0.1:{api_port}/ready", work / "api.log") as ours,
        ):
            targets = {
                "mlflow models serve": (
                    f"http://127.0.0.1:{mlflow_port}/invocations",
                    {"dataframe_records": [SAMPLE]},
                    theirs.pid,
                ),
                "automatrix OIP infer": (
                    f"http://127.0.0.1:{api_port}/v2/models/neuroweaver/infer",
                    INFER,
                    ours.pid,
                ),
            }
            best = measure(targets, args, work)
        report(best, args)


if __name__ == "__main__":
    main()
