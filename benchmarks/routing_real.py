"""RelayCore on real sockets: every policy through POST /api/v2/relaycore/message, side by side.

Four backend processes on 127.0.0.1 (benchmarks/relay_backend.py: a JSON endpoint with a
configurable delay and 2 workers each, so that an endpoint queues when pushed past its
capacity) sit behind one API process (uvicorn, one worker, the real app on temporary stores).
For each scenario and policy the same Poisson load, from one seed, is sent open-loop through the
API; endpoints are registered afresh for every run so no policy inherits another's learning.
Each seed runs the policies in another order (rotated by the seed), since the shared machine's
speed drifts over minutes. The messages go out through benchmarks/loadgen.py, whose cost per
request stays flat however many are outstanding (httpx's pool did not: the load client itself
stalled for seconds).

Scenarios (base delay 20 ms, 100 ms in the burst):
- equal: four equal endpoints, at about 40% of their capacity;
- unequal: delays 1x, 1x, 2x, 4x, at about 55% of capacity;
- slowdown: one endpoint becomes 20x slower from 30% to 60% of the run (Linkerd's case);
- fast 503: one endpoint answers 503 at once;
- burst: twice the capacity for three seconds, 20% priority 9 and 80% priority 1, the router
  holding at most 2 in flight per endpoint and 200 waiting: high-priority p99 is compared with
  the unloaded latency, and every low-priority message must be served or refused with a 429.

In the equal, unequal and slowdown scenarios the baselines also run without a per-endpoint
limit (marked "*"; 10,000, the API's maximum), as Envoy's and Linkerd's balancers do: they never
skip an endpoint for being busy, so under the limit round robin is kinder to a slow endpoint
than the real policy is. Adaptive always runs under the limit, RelayCore's own feature.

Also measured: the latency RelayCore adds on loopback, against calling a backend directly.

Beside the policies, the clairvoyant oracle of routing_oracle.py routes the same arrivals over
the backends' configured delays plus RelayCore's latency at rest, knowing every backlog
exactly: its ratios show how far each target is within reach on the scenario at all.

    .venv/bin/python benchmarks/routing_real.py [--seconds 20] [--rate 150] [--seed 1]
        [--policies ...] [--scenarios equal unequal ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from loadgen import JsonPoster, ProtocolError
from routing_oracle import OracleEndpoint, earliest_completion

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "benchmarks" / "relay_backend.py"
POLICIES = ("round_robin", "least_request", "peak_ewma", "adaptive")
BASE_MS = 20.0
WORKERS = 2
HIGH, LOW = 9, 1
MESSAGE_PATH = "/api/v2/relaycore/message"
START_LEAD_S = 0.5  # between scheduling the load and its first message (see send_load)


@dataclass
class Scenario:
    name: str
    factors: list[float]
    load: float  # share of the endpoints' capacity
    fail_first: bool = False
    slowdown: bool = False
    burst: bool = False
    max_concurrency: int = 4
    base_ms: float = BASE_MS
    unlimited_baselines: bool = False


UNLIMITED = "*"
NO_LIMIT = 10_000
ORACLE = "oracle"


SCENARIOS = [
    Scenario("equal", [1, 1, 1, 1], 0.4, unlimited_baselines=True),
    Scenario("unequal 1,1,2,4x", [1, 1, 2, 4], 0.55, unlimited_baselines=True),
    Scenario("slowdown 20x", [1, 1, 1, 1], 0.4, slowdown=True, unlimited_baselines=True),
    Scenario("fast 503", [1, 1, 1, 1], 0.3, fail_first=True),
    # Slower endpoints, so that twice their capacity stays well within what the API process
    # itself can take on two shared cores: the backlog then builds in RelayCore's queue.
    Scenario(
        "burst 2x, mixed priority",
        [1, 1, 1, 1],
        2.0,
        burst=True,
        max_concurrency=WORKERS,
        base_ms=100.0,
    ),
]


@dataclass
class Outcome:
    sent_at: float
    priority: int
    status: int
    latency_s: float
    endpoint: str | None


@dataclass
class Run:
    scenario: str
    policy: str
    outcomes: list[Outcome] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)

    def percentile_ms(self, q: float, priority: int | None = None) -> float:
        values = sorted(
            o.latency_s for o in self.outcomes if o.status == 200 and priority in (None, o.priority)
        )
        if not values:
            return float("nan")
        return values[min(int(q / 100 * len(values)), len(values) - 1)] * 1000

    def success(self) -> float:
        return sum(o.status == 200 for o in self.outcomes) / max(len(self.outcomes), 1)

    def statuses(self, priority: int | None = None) -> Counter[int]:
        return Counter(o.status for o in self.outcomes if priority in (None, o.priority))

    def slowest(self, n: int) -> list[tuple[float, float, str | None]]:
        """(sent at s, latency ms, endpoint) of the n slowest successes: what the tail is made of."""
        ok = sorted((o for o in self.outcomes if o.status == 200), key=lambda o: -o.latency_s)
        return [
            (
                round(o.sent_at, 2),
                round(o.latency_s * 1000, 1),
                _backend(o.endpoint) if o.endpoint else None,
            )
            for o in ok[:n]
        ]

    def share(self) -> dict[str, float]:
        total = sum(self.attempts.values()) or 1
        return {k: round(v / total, 3) for k, v in sorted(self.attempts.items())}


def spawn_backends(
    specs: list[tuple[float, int | None]],
) -> list[tuple[subprocess.Popen[str], str]]:
    """One process per (delay_ms, fail_status), started together; (process, base URL) each."""
    processes = []
    for i, (delay_ms, fail_status) in enumerate(specs):
        command = [
            sys.executable,
            str(BACKEND),
            "--name",
            f"b{i}",
            "--delay-ms",
            str(delay_ms),
            "--workers",
            str(WORKERS),
        ]
        if fail_status:
            command += ["--fail-status", str(fail_status)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    found = []
    for process in processes:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        found.append((process, f"http://127.0.0.1:{port}"))
    return found


@contextmanager
def api_server(workdir: Path, port: int) -> Iterator[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{workdir / 'store.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{workdir / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(workdir / "models"),
        "MODEL_RELOAD_INTERVAL": "3600",
        "RELAYCORE_QUEUE_CAPACITY": "200",
    }
    for name in ("API_KEY", "RELAYCORE_ENDPOINTS", "ENVIRONMENT"):
        env.pop(name, None)
    log = (workdir / "api.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "serving.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/v2/relaycore/status", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    try:
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def arrivals(rate: float, seconds: float, burst: bool, seed: int) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    out: list[tuple[float, int]] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append((t, HIGH if (burst and rng.random() < 0.2) else (LOW if burst else 5)))


async def send_load(
    poster: JsonPoster,
    client: httpx.AsyncClient,
    plan: list[tuple[float, int]],
    controls: list[tuple[float, str, dict[str, Any]]],
) -> list[Outcome]:
    """The plan's messages at their times (open loop, through `poster`), and the controls."""
    loop = asyncio.get_running_loop()
    # The plan starts once every message's task exists: creating thousands of them takes tens
    # of milliseconds, and the first messages would otherwise leave together, a burst the
    # plan (and the oracle, which routes the plan) does not hold.
    start = loop.time() + START_LEAD_S
    outcomes: list[Outcome] = []

    async def one(at: float, priority: int, i: int) -> None:
        await asyncio.sleep(max(start + at - loop.time(), 0))
        sent = loop.time()
        try:
            status, body = await poster.post(
                MESSAGE_PATH, {"payload": {"id": i}, "priority": priority}
            )
            endpoint = body.get("endpoint") if status == 200 else None
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ProtocolError):
            status, endpoint = 599, None
        outcomes.append(Outcome(sent - start, priority, status, loop.time() - sent, endpoint))

    async def control(at: float, url: str, body: dict[str, Any]) -> None:
        await asyncio.sleep(max(start + at - loop.time(), 0))
        await client.post(url + "/__control", json=body)

    await asyncio.gather(
        *(one(at, p, i) for i, (at, p) in enumerate(plan)), *(control(*c) for c in controls)
    )
    return outcomes


async def run_scenario(
    base: str,
    scenario: Scenario,
    label: str,
    urls: list[str],
    seconds: float,
    rate: float,
    seed: int,
) -> Run:
    policy = label.removesuffix(UNLIMITED)
    limit = NO_LIMIT if label.endswith(UNLIMITED) else scenario.max_concurrency
    names = [
        f"{scenario.name.split()[0]}-{policy}{'-nolimit' if limit == NO_LIMIT else ''}-{i}"
        for i in range(len(urls))
    ]
    async with httpx.AsyncClient(timeout=60) as client:  # registration and controls only
        await client.put(base + "/api/v2/relaycore/policy", json={"policy": policy})
        for name, url in zip(names, urls, strict=True):
            (
                await client.post(
                    base + "/api/v2/relaycore/endpoints",
                    json={"name": name, "url": url + "/work", "max_concurrency": limit},
                )
            ).raise_for_status()
        controls: list[tuple[float, str, dict[str, Any]]] = []
        if scenario.slowdown:
            controls = [
                (0.3 * seconds, urls[0], {"delay_ms": 20 * scenario.base_ms}),
                (0.6 * seconds, urls[0], {"delay_ms": scenario.base_ms}),
            ]
        load_s = 3.0 if scenario.burst else seconds
        plan = arrivals(rate, load_s, scenario.burst, seed)
        url = httpx.URL(base)
        poster = JsonPoster(url.host, url.port or 80)
        try:
            run = Run(scenario.name, label, await send_load(poster, client, plan, controls))
        finally:
            await poster.aclose()
        status = (await client.get(base + "/api/v2/relaycore/status")).json()
        run.attempts = {_backend(e["name"]): e["completed"] for e in status["endpoints"]}
        for name in names:
            await client.delete(f"{base}/api/v2/relaycore/endpoints/{name}")
    return run


def oracle_run(
    scenario: Scenario, seconds: float, rate: float, seed: int, overhead_ms: float
) -> Run:
    """The clairvoyant oracle on this scenario's arrivals and configured delays."""

    def delay_s(i: int, t: float) -> float:
        slow = scenario.slowdown and i == 0 and 0.3 * seconds <= t < 0.6 * seconds
        return (scenario.base_ms * scenario.factors[i] * (20 if slow else 1) + overhead_ms) / 1000

    def spec(i: int) -> OracleEndpoint:
        return OracleEndpoint(WORKERS, lambda t: delay_s(i, t), lambda rng, t: delay_s(i, t))

    plan = arrivals(rate, seconds, scenario.burst, seed)
    latencies = earliest_completion(
        [spec(i) for i in range(len(scenario.factors))], [t for t, _ in plan], seed
    )
    return Run(
        scenario.name,
        ORACLE,
        [Outcome(t, p, 200, s, None) for (t, p), s in zip(plan, latencies, strict=True)],
    )


async def added_latency(base: str, direct_url: str, n: int = 300) -> dict[str, float]:
    """Sequential calls to one idle 0-ms backend, directly and through RelayCore."""
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(
            base + "/api/v2/relaycore/endpoints",
            json={"name": "direct", "url": direct_url + "/work"},
        )

        async def timed(url: str, body: dict[str, Any]) -> list[float]:
            out = []
            for i in range(n):
                start = time.perf_counter()
                (
                    await client.post(url, json=body | {"i": i} if "payload" not in body else body)
                ).raise_for_status()
                out.append(time.perf_counter() - start)
            return sorted(out)

        direct = await timed(direct_url + "/work", {"id": 1})
        routed = await timed(base + "/api/v2/relaycore/message", {"payload": {"id": 1}})
        await client.delete(base + "/api/v2/relaycore/endpoints/direct")
    p = lambda v, q: v[min(int(q / 100 * len(v)), len(v) - 1)] * 1000  # noqa: E731
    return {
        "direct_p50_ms": p(direct, 50),
        "direct_p99_ms": p(direct, 99),
        "relaycore_p50_ms": p(routed, 50),
        "relaycore_p99_ms": p(routed, 99),
        "added_p50_ms": p(routed, 50) - p(direct, 50),
        "added_p99_ms": p(routed, 99) - p(direct, 99),
    }


def report(run: Run, unloaded_ms: float) -> dict[str, Any]:
    """The figures of one run; `unloaded_ms` is one call's latency through RelayCore at rest."""
    row: dict[str, Any] = {
        "scenario": run.scenario,
        "policy": run.policy,
        "messages": len(run.outcomes),
        "p50_ms": run.percentile_ms(50),
        "p99_ms": run.percentile_ms(99),
        "p999_ms": run.percentile_ms(99.9),
        "success": run.success(),
        "share": run.share(),
        "statuses": dict(run.statuses()),
        "slowest": run.slowest(5),
        # every message: (sent at s, latency ms, status, endpoint index or None)
        "outcomes": [
            (round(o.sent_at, 4), round(o.latency_s * 1000, 2), o.status, _index(o.endpoint))
            for o in run.outcomes
        ],
    }
    if "burst" in run.scenario:
        low = run.statuses(LOW)
        row |= {
            "high_p99_ms": run.percentile_ms(99, HIGH),
            "high_p99_vs_unloaded": run.percentile_ms(99, HIGH) / unloaded_ms,
            "low_served": low[200],
            "low_429": low[429],
            "low_other": sum(v for k, v in low.items() if k not in (200, 429)),
        }
    return row


def _backend(name: str) -> str:
    """The backend's number in a registered name ("unequal-adaptive-3" -> "3")."""
    return name.rsplit("-", 1)[1]


def _index(endpoint: str | None) -> int | None:
    return int(_backend(endpoint)) if endpoint else None


def print_row(row: dict[str, Any]) -> None:
    share = " ".join(f"{k}:{v:.2f}" for k, v in row["share"].items())
    line = (
        f"  {row['policy']:<14} n={row['messages']:<5} p50 {row['p50_ms']:7.1f}  p99 {row['p99_ms']:8.1f}"
        f"  p99.9 {row['p999_ms']:8.1f} ms  success {row['success'] * 100:6.2f}%  share {share}"
    )
    line += (
        "\n  "
        + " " * 14
        + " slowest (s, ms, endpoint): "
        + " ".join(f"{t}/{ms}/{e}" for t, ms, e in row["slowest"])
    )
    if "high_p99_ms" in row:
        line += (
            f"\n  {'':<14} high-priority p99 {row['high_p99_ms']:.1f} ms = "
            f"{row['high_p99_vs_unloaded']:.2f}x unloaded; low: {row['low_served']} served, "
            f"{row['low_429']} refused 429, {row['low_other']} other"
        )
    print(line, flush=True)


async def main_async(args: argparse.Namespace, base: str) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": []}
    [(process, url)] = spawn_backends([(0.0, None)])
    try:
        results["overhead"] = await added_latency(base, url)
    finally:
        process.kill()
    o = results["overhead"]
    print(
        f"added latency on loopback: p50 {o['added_p50_ms']:.2f} ms (direct {o['direct_p50_ms']:.2f},"
        f" via RelayCore {o['relaycore_p50_ms']:.2f}), p99 {o['added_p99_ms']:.2f} ms",
        flush=True,
    )
    for scenario in SCENARIOS:
        if args.scenarios and not scenario.name.startswith(tuple(args.scenarios)):
            continue
        print(f"\n{scenario.name}", flush=True)
        labels = list(args.policies)
        if scenario.unlimited_baselines:
            labels += [p + UNLIMITED for p in args.policies if p != "adaptive"]
        # The machine's speed drifts over minutes: each seed starts the order at another policy,
        # so that over seeds no policy always runs first, or last, or right after another.
        turn = (args.seed - 1) % len(labels)
        labels = labels[turn:] + labels[:turn]
        capacity = sum(WORKERS / (scenario.base_ms * f / 1000) for f in scenario.factors)
        rate = (
            min(args.rate, scenario.load * capacity)
            if not scenario.burst
            else scenario.load * capacity
        )
        for policy in labels:
            backends = spawn_backends(
                [
                    (scenario.base_ms * f, 503 if scenario.fail_first and i == 0 else None)
                    for i, f in enumerate(scenario.factors)
                ]
            )
            try:
                run = await run_scenario(
                    base, scenario, policy, [u for _, u in backends], args.seconds, rate, args.seed
                )
            finally:
                for process, _ in backends:
                    process.kill()
            row = report(run, scenario.base_ms + o["relaycore_p50_ms"])
            results["runs"].append(row)
            print_row(row)
        if scenario.unlimited_baselines:  # the scenarios with speed targets
            row = report(
                oracle_run(scenario, args.seconds, rate, args.seed, o["relaycore_p50_ms"]), 0.0
            )
            results["runs"].append(row)
            print_row(row)
        print_ratios([r for r in results["runs"] if r["scenario"] == scenario.name])
    return results


def print_ratios(rows: list[dict[str, Any]]) -> None:
    by = {r["policy"]: r for r in rows}
    for who in ("adaptive", ORACLE):
        if who not in by:
            continue
        a = by[who]
        for label, r in by.items():
            if label not in ("adaptive", ORACLE):
                print(
                    f"  {who + ' / ' + label:<30} p99 {a['p99_ms'] / r['p99_ms']:.2f}"
                    f"  p99.9 {a['p999_ms'] / r['p999_ms']:.2f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=150.0, help="messages per second at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--scenarios", nargs="+", default=[], help="name prefixes; all if none")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="routing-real-"))
    try:
        with api_server(workdir, args.port) as base:
            results = asyncio.run(main_async(args, base))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    path = out / f"routing_real_seed{args.seed}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwhole run {time.monotonic() - started:.0f} s; figures in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
