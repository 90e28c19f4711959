"""RelayCore's shared control plane: how fast a change reaches another process, and what it costs.

Two `automatrix serve` processes on one PostgreSQL database (LISTEN/NOTIFY) and two on one
SQLite file (the version poll, every RELAYCORE_CONTROL_POLL_S = 0.25 s):

- propagation: 100 changes (an endpoint drained, then undrained, in turn) made through process
  A; the time from A's answer until process B's GET /api/v2/relaycore/endpoints shows it,
  polled back to back (each GET about a millisecond on loopback), each change at a random
  moment (0 to 0.3 s after the last was seen), so that it falls at a random phase of B's poll;
- message overhead: POST /api/v2/relaycore/message round trips to a local backend (no delay),
  through A and B, which watch the control plane (A made the changes, B followed them), against
  a third process on the same store with RELAYCORE_CONTROL_SHARED=false (no watching: the
  behaviour before the shared control plane), in twelve rounds in a rotating order, so that the
  machine's drift hits every side alike. A against B shows the noise between two equal processes.
  Beside the latency, the API process's CPU time per message (from /proc), which the machine's
  other load disturbs less.

    .venv/bin/python benchmarks/control_plane.py [--changes 100] [--messages 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_bench import free_port, stop, wait_ready  # noqa: E402

AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))
ADMIN = os.environ.get(
    "AUTOMATRIX_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RELAY = "/api/v2/relaycore"


@contextmanager
def postgres_database() -> Iterator[str]:
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"automatrix_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def backend() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "relay_backend.py"), "--name", "local"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        yield f"http://127.0.0.1:{process.stdout.readline().split()[1]}/work"
    finally:
        stop(process)  # type: ignore[arg-type]


def environment(store: str, tmp: Path, backend_url: str, shared: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": store,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{tmp / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(tmp / "models"),
        "MODEL_RELOAD_INTERVAL": "600",
        "ENABLE_ML_TRAINING": "false",
        "RELAYCORE_ENDPOINTS": f"local={backend_url},spare={backend_url}",
        "RELAYCORE_CONTROL_SHARED": "true" if shared else "false",
    }
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "REDIS_URL", "RELAYCORE_POLICY"):
        env.pop(name, None)
    return env


def start(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with (tmp / f"api-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [AUTOMATRIX, "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, f"http://127.0.0.1:{port}"


def propagation_ms(a: httpx.Client, b: httpx.Client, changes: int) -> list[float]:
    found = []
    rng = random.Random(1)
    for i in range(changes):
        drained = i % 2 == 0
        verb = "drain" if drained else "undrain"
        # At a random phase of B's poll: changing right after B saw the last change would always
        # land just after its read, and measure the whole poll interval every time.
        time.sleep(rng.uniform(0.0, 0.3))
        a.post(f"{RELAY}/endpoints/spare/{verb}").raise_for_status()
        t0 = time.perf_counter()
        while True:
            listed = {e["name"]: e["drained"] for e in b.get(f"{RELAY}/endpoints").json()}
            if listed["spare"] is drained:
                break
        found.append((time.perf_counter() - t0) * 1000.0)
    return found


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process and its children (uvicorn workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in [pid, *children(pid)]:
        with suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *children(int(child))]
    return found


def round_trips_ms(client: httpx.Client, n: int) -> list[float]:
    found = []
    for i in range(n):
        t0 = time.perf_counter()
        client.post(f"{RELAY}/message", json={"payload": {"id": i}}).raise_for_status()
        found.append((time.perf_counter() - t0) * 1000.0)
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="control-bench-")))
        url = stack.enter_context(backend())
        from mlflow import MlflowClient  # one MLflow store, created before six processes share it

        MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}").search_experiments()
        stores = {"postgres notify": stack.enter_context(postgres_database())}
        stores["sqlite poll"] = f"sqlite:///{tmp / 'automatrix.db'}"
        servers: dict[str, list[tuple[subprocess.Popen[bytes], str]]] = {}
        for label, store in stores.items():
            shared, off = environment(store, tmp, url, True), environment(store, tmp, url, False)
            servers[label] = [start(shared, tmp), start(shared, tmp), start(off, tmp)]
        for process, base in (s for group in servers.values() for s in group):
            stack.callback(stop, process)
            wait_ready(f"{base}/health", process, timeout=300)
        for label, group in servers.items():
            report(label, group, args.changes, args.messages)


def report(
    label: str, group: list[tuple[subprocess.Popen[bytes], str]], changes: int, messages: int
) -> None:
    (pa, a), (pb, b), (po, off) = group
    with (
        httpx.Client(base_url=a, timeout=10) as ca,
        httpx.Client(base_url=b, timeout=10) as cb,
        httpx.Client(base_url=off, timeout=10) as co,
    ):
        spread = propagation_ms(ca, cb, changes)
        print(
            f"{label}: propagation over {changes} changes: median {statistics.median(spread):.1f} ms,"
            f" p99 {p(spread, 0.99):.1f} ms, max {max(spread):.1f} ms"
        )
        sides = {"shared A": (ca, pa.pid), "shared B": (cb, pb.pid), "off": (co, po.pid)}
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu = dict.fromkeys(sides, 0.0)
        for client, _ in sides.values():
            round_trips_ms(client, 100)  # warm each
        order = list(sides)
        for i in range(12):  # rounds in a rotating order, so that drift hits every side alike
            for name in order[i % 3 :] + order[: i % 3]:
                client, pid = sides[name]
                before = cpu_s(pid)
                times[name] += round_trips_ms(client, messages // 12)
                cpu[name] += cpu_s(pid) - before
        base = statistics.median(times["off"])
        base_cpu = cpu["off"] / len(times["off"]) * 1000.0
        for name, found in times.items():
            median, per = statistics.median(found), cpu[name] / len(found) * 1000.0
            print(
                f"{label}: message round trip, {name}: median {median:.2f} ms,"
                f" p99 {p(found, 0.99):.2f} ms, API CPU {per:.3f} ms per message;"
                f" ratio to off {median / base:.3f} (CPU {per / base_cpu:.3f})"
            )


if __name__ == "__main__":
    main()
