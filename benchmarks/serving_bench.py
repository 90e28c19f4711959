"""Serving throughput, side by side: `mlflow models serve` against `automatrix serve`.

One model is registered in a temporary MLflow store, then served two ways, one worker each, on
127.0.0.1. The same client (`wrk`, with a Lua script for the POST body) loads each with
8 connections of one-row requests, then with 1000-row batches. It prints requests/s, rows/s,
p50/p99, errors and each server's peak memory (VmHWM over its process tree), then the ratios.

    .venv/bin/python benchmarks/serving_bench.py [--duration 10] [--connections 8]

Needs `wrk` (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLE = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows: int
    cpu_ms_per_request: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def register_model(env: dict[str, str]) -> None:
    """Registers one NeuroWeaver MLP (the default architecture, fitted scaling) as @champion."""
    code = """
import mlflow, numpy as np, torch
from mlflow import MlflowClient
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
rng = np.random.default_rng(0)
x = np.column_stack([rng.uniform(0, h, 500) for h in (100, 100, 2000, 100, 50000)])
torch.manual_seed(0)
model = NeuroWeaverModel(Architecture(), FeaturePipeline.fit(x), build_network(Architecture()))
experiment = MlflowClient().create_experiment("bench", artifact_location=mlflow.get_tracking_uri().replace("sqlite:///", "file://").rsplit("/", 1)[0] + "/artifacts")
with mlflow.start_run(experiment_id=experiment):
    version = registry.register(model, "neuroweaver", x)
MlflowClient().set_registered_model_alias("neuroweaver", "champion", version)
"""
    subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def server(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Any:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_ready(ready_url, process)
        except RuntimeError:
            sys.stderr.write(log.read_text()[-3000:])
            raise
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stops a server's process group: SIGTERM, then SIGKILL after 20 s."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            found += tree(int(child))
    return found


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident memory) over the server's process tree."""
    total = 0
    for member in tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the server's process tree."""
    ticks = 0
    for member in tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, body: dict[str, Any], rows: int, duration: int, connections: int, work: Path, pid: int
) -> Result:
    body_file = work / f"body-{rows}-{abs(hash(url))}.json"
    body_file.write_text(json.dumps(body))
    script = work / f"post-{rows}-{abs(hash(url))}.lua"
    script.write_text(LUA.replace("{body}", str(body_file)))
    httpx.post(url, json=body, timeout=30).raise_for_status()  # the body is right for this server
    subprocess.run(
        ["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(script), url],
        capture_output=True,
        check=True,
    )  # warm-up
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk(out, rows)
    requests = max(1.0, result.requests_per_s * duration)
    result.cpu_ms_per_request = (cpu_seconds(pid) - before) * 1000 / requests
    return result


def parse_wrk(out: str, rows: int) -> Result:
    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(
        rps, latency("50"), latency("99"), errors + (int(non2xx.group(1)) if non2xx else 0), rows
    )


def bench(
    targets: dict[str, tuple[str, dict[str, Any], int]],
    batch: dict[str, Any],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, dict[str, Result]]:
    """Best of `rounds` per server and mode, the servers taking turns within each round.

    On a shared machine other work comes and goes; alternating the servers exposes both to the
    same conditions, and the best round is the closest to an undisturbed measurement.
    """
    best: dict[str, dict[str, Result]] = {name: {} for name in targets}
    for round_ in range(args.rounds):
        for mode in ("single", "batch"):
            for name, (url, one, pid) in targets.items():
                body, rows = (one, 1) if mode == "single" else (batch, args.batch_rows)
                result = wrk(url, body, rows, args.duration, args.connections, work, pid)
                print(
                    f"round {round_ + 1} {name:<22}{mode:<8}{result.requests_per_s:>9.0f} req/s"
                    f"  p99 {result.p99_ms:.2f} ms  {result.cpu_ms_per_request:.3f} CPU ms/req",
                    flush=True,
                )
                kept = best[name].get(mode)
                if kept is None or result.requests_per_s > kept.requests_per_s:
                    best[name][mode] = result
    return best


def report(ours: dict[str, Any], theirs: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nbest of {args.rounds} rounds of {args.duration} s, {args.connections} connections, one worker each"
    )
    print(
        f"\n{'server':<28}{'mode':<10}{'req/s':>10}{'rows/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'CPU ms/req':>12}"
    )
    for found in (theirs, ours):
        for mode in ("single", "batch"):
            r: Result = found[mode]
            print(
                f"{found['name']:<28}{mode:<10}{r.requests_per_s:>10.0f}{r.rows_per_s:>12.0f}"
                f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}{r.cpu_ms_per_request:>12.3f}"
            )
    for found in (theirs, ours):
        print(f"peak RSS {found['name']:<28}{found['peak_rss_mb']:>8.0f} MB")
    s, t = ours["single"], theirs["single"]
    print(f"\none-row throughput: {s.requests_per_s / t.requests_per_s:.1f}x mlflow (target >= 5x)")
    print(
        f"one-row p99: {s.p99_ms:.2f} ms vs {t.p99_ms:.2f} ms = {s.p99_ms / t.p99_ms:.3f} of mlflow's (target <= 0.1)"
    )
    print(
        f"batch rows/s: {ours['batch'].rows_per_s / theirs['batch'].rows_per_s:.1f}x mlflow (target >= 5x)"
    )
    print(
        f"server CPU per one-row request: {t.cpu_ms_per_request / s.cpu_ms_per_request:.1f}x less than mlflow"
        " (independent of other load on the machine)"
    )


def environment(work: Path) -> dict[str, str]:
    """The servers' environment: temporary stores under `work`, no key, no shared state."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "DATABASE_URL": f"sqlite:///{work / 'store.db'}",
        "ENABLE_ML_TRAINING": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    for name in ("API_KEY", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        work = Path(tmp)
        env = environment(work)
        print("registering the model ...", flush=True)
        register_model(env)
        one = dict(SAMPLE)
        batch = {
            "instances": [{**SAMPLE, "cpu_usage": float(i % 100)} for i in range(args.batch_rows)]
        }
        mlflow_port, api_port = free_port(), free_port()
        mlflow_cmd = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/neuroweaver@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(mlflow_port),
            "-w",
            "1",
        ]
        api_cmd = [str(BIN / "automatrix"), "serve", "--host", "127.0.0.1", "--port", str(api_port)]
        print("starting mlflow models serve and automatrix serve ...", flush=True)
        with (
            server(
                mlflow_cmd, env, f"http://127.0.0.1:{mlflow_port}/ping", work / "mlflow.log"
            ) as theirs_p,
            server(api_cmd, env, f"http://127.0.0.1:{api_port}/ready", work / "api.log") as ours_p,
        ):
            targets = {
                "mlflow models serve": (
                    f"http://127.0.0.1:{mlflow_port}/invocations",
                    {"dataframe_records": [one]},
                    theirs_p.pid,
                ),
                "automatrix serve": (
                    f"http://127.0.0.1:{api_port}/api/v2/neuroweaver/predict",
                    one,
                    ours_p.pid,
                ),
            }
            best = bench(targets, batch, args, work)
            theirs = {
                "name": "mlflow models serve",
                **best["mlflow models serve"],
                "peak_rss_mb": peak_rss_mb(theirs_p.pid),
            }
            ours = {
                "name": "automatrix serve",
                **best["automatrix serve"],
                "peak_rss_mb": peak_rss_mb(ours_p.pid),
            }
        report(ours, theirs, args)


if __name__ == "__main__":
    main()
