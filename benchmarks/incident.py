"""The end-to-end incident benchmark (issue 17): `automatrix up` on the demo fleet under load,
one replica faulted through the fault contract, every step timed from the outside.

    .venv/bin/python benchmarks/incident.py                  # both arms, about 50 min
    .venv/bin/python benchmarks/incident.py --arms on --warmup 300

Each arm is a fresh `automatrix up --no-chaos --no-seed` (temporary stores, free ports) with a
real Alertmanager (Debian's `prometheus-alertmanager`) as ALERTMANAGER_URL:
- on: RelayCore adaptive, HEALING_MODE=auto, the replica watch every 10 s (what `make run` does);
- off: RelayCore round robin, HEALING_MODE=off (detection and alerts still run).

After the warm-up (at most 10 minutes) it injects a latency fault (x20) into checkout-1, then an
error fault (50% 503s) into search-1, each for `--fault-s` seconds (the next replica of each
service in each further round of `--repeat`), and then a service-wide
surge (x3 the traffic of checkout). Polling the API, RelayCore and Alertmanager once a second,
it prints, from the fault's onset: the first new anomaly of that replica, the ServiceAnomaly
and HealingAction alerts for it in Alertmanager, the drain, and the restore after the fault's
end; a client of its own sends 10 messages/s to the faulted service meanwhile, and its error
rate and p99 are compared between the arms. Everything stays on 127.0.0.1 and is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_bench import free_port  # noqa: E402
from serving.fleet.loadgen import LoadConfig, LoadReport, run_load  # noqa: E402
from tests.support.alertmanager import ALERTMANAGER, alertmanager  # noqa: E402

AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))
ARMS: dict[str, dict[str, str]] = {
    "on": {"RELAYCORE_POLICY": "adaptive", "HEALING_MODE": "auto", "HEALING_WATCH_SECONDS": "10"},
    "off": {"RELAYCORE_POLICY": "round_robin", "HEALING_MODE": "off"},
}
FAULTS = (
    ("latency", "checkout-1", {"kind": "latency", "factor": 20}),
    ("errors", "search-1", {"kind": "errors", "rate": 0.5}),
)
REPLICAS = 6  # the demo fleet: checkout and search, 3 replicas each
CLIENT_RATE = 10.0  # messages/s of the benchmark's own client, on top of the fleet's 20
SURGE_RATE = 20.0  # the fleet sends checkout about 10/s: +20/s is x3
AFTER_S = 150.0  # how long after a fault's end a restore is waited for


def say(line: str) -> None:
    print(f"[incident] {line}", flush=True)


# --- the platform -------------------------------------------------------------------------


@contextmanager
def platform(root: Path, arm: str, alerts_url: str) -> Iterator[str]:
    """`automatrix up` on temporary stores and free ports; the API's base URL."""
    api_port = free_port()
    env = {
        **os.environ,
        **ARMS[arm],
        "API_PORT": str(api_port),
        "PREFECT_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{root / 'automatrix.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        "MODEL_SAVE_PATH": str(root / "models"),
        "PREFECT_HOME": str(root / "prefect"),
        "ALERTMANAGER_URL": alerts_url,
    }
    for name in ("API_KEY", "INGEST_SOURCE", "PROMETHEUS_URL", "SCRAPE_TARGETS"):
        env.pop(name, None)
    log = (root / "up.log").open("wb")
    command = [AUTOMATRIX, "up", "--no-chaos", "--no-seed"]
    up = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait(lambda: up.poll() is not None or len(replicas(api)) >= REPLICAS, 300, "the fleet")
        if up.poll() is not None:
            raise RuntimeError(f"up exited with {up.returncode}: see {root / 'up.log'}")
        yield api
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise TimeoutError(f"no {what} after {timeout:.0f} s")


def get(url: str, **params: Any) -> Any:
    with suppress(httpx.HTTPError, ValueError):
        response = httpx.get(url, params=params, timeout=5)
        if response.is_success:
            return response.json()
    return None


def replicas(api: str) -> dict[str, dict[str, Any]]:
    found = get(f"{api}/api/v2/relaycore/endpoints") or []
    return {e["name"]: e for e in found if isinstance(e, dict)}


def anomaly_ids(api: str, service: str, replica: str) -> set[int]:
    found = get(f"{api}/api/v2/ai/anomalies", service=service) or {}
    return {a["id"] for a in found.get("anomalies", []) if a.get("replica") == replica}


def drain_ids(api: str) -> dict[str, str]:
    found = get(f"{api}/api/v2/ai/actions") or {}
    return {
        a["id"]: str(a.get("replica"))
        for a in found.get("actions", [])
        if a.get("kind") == "drain_endpoint" and a.get("state") == "succeeded"
    }


def alerts(alerts_url: str, replica: str, alertname: str | None = None) -> list[dict[str, Any]]:
    matchers = [f'replica="{replica}"'] + ([f'alertname="{alertname}"'] if alertname else [])
    return list(get(f"{alerts_url}/api/v2/alerts", filter=matchers) or [])


def alerted(alerts_url: str, alertname: str, replica: str, since: datetime) -> bool:
    """An alert for the replica that began at or after `since` (one already firing is older)."""
    return any(
        datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")) >= since
        for a in alerts(alerts_url, replica, alertname)
    )


def actions_since(api: str, service: str, known: set[str]) -> list[str]:
    found = get(f"{api}/api/v2/ai/actions", service=service) or {}
    return [
        f"{a['kind']} {a.get('replica')} {a['state']} by {a['started_by']}: {a['cause'][:200]}"
        for a in found.get("actions", [])
        if a["id"] not in known
    ]


# --- the client ---------------------------------------------------------------------------


class Client:
    """The benchmark's own load through RelayCore, in a thread of its own."""

    def __init__(self, api: str, config: LoadConfig) -> None:
        self.report = LoadReport()
        self._thread = threading.Thread(target=self._run, args=(api, config), daemon=True)
        self._thread.start()

    def _run(self, api: str, config: LoadConfig) -> None:
        async def go() -> LoadReport:
            async with httpx.AsyncClient(base_url=api, timeout=30) as client:
                return await run_load(client, config)

        self.report = asyncio.run(go())

    def join(self) -> dict[str, Any]:
        self._thread.join()
        summary = self.report.summary()
        sent = max(self.report.sent, 1)
        failed = sum(n for status, n in self.report.statuses.items() if not 200 <= status < 300)
        summary["error_rate"] = round(failed / sent, 4)
        return summary


# --- one incident -------------------------------------------------------------------------


@dataclass
class Incident:
    kind: str
    replica: str
    anomaly_s: float | None = None
    anomaly_alert_s: float | None = None
    drain_alert_s: float | None = None
    drain_s: float | None = None
    restore_after_end_s: float | None = None
    other_drains: list[str] = field(default_factory=list)
    client: dict[str, Any] = field(default_factory=dict)
    firing_before: list[str] = field(default_factory=list)  # the replica's alerts at onset
    actions: list[str] = field(default_factory=list)  # every action on its service meanwhile


def incident(
    api: str, alerts_url: str, kind: str, replica: str, fault: dict[str, Any], fault_s: float
) -> Incident:
    service = replica.rsplit("-", 1)[0]
    base = replicas(api)[replica]["url"].rsplit("/", 1)[0]
    known, drains = anomaly_ids(api, service, replica), drain_ids(api)
    before = set(actions_ids(api, service))
    firing = sorted(a["labels"]["alertname"] for a in alerts(alerts_url, replica))
    began = datetime.now(UTC) - timedelta(seconds=1)
    client = Client(api, LoadConfig(rate=CLIENT_RATE, duration_s=fault_s + 30, services=(service,)))
    onset = time.monotonic()
    httpx.post(
        f"{base}/faults", json={**fault, "duration_s": fault_s}, timeout=5
    ).raise_for_status()
    found = Incident(kind, replica, firing_before=firing)
    while (since := time.monotonic() - onset) < fault_s + AFTER_S:
        if found.anomaly_s is None and anomaly_ids(api, service, replica) - known:
            found.anomaly_s = since
        if found.anomaly_alert_s is None and alerted(alerts_url, "ServiceAnomaly", replica, began):
            found.anomaly_alert_s = since
        if found.drain_alert_s is None and alerted(alerts_url, "HealingAction", replica, began):
            found.drain_alert_s = since
        drained = replicas(api).get(replica, {}).get("drained")
        if found.drain_s is None and drained:
            found.drain_s = since
        if found.drain_s is not None and not drained and since > fault_s:
            found.restore_after_end_s = since - fault_s
            break
        if found.drain_s is None and since > fault_s + 60:
            break  # not drained a minute after the fault's end: nothing left to time
        time.sleep(1.0)
    found.other_drains = sorted(
        r for i, r in drain_ids(api).items() if i not in drains and r != replica
    )
    found.client = client.join()
    found.actions = actions_since(api, service, before)
    return found


def actions_ids(api: str, service: str) -> list[str]:
    found = get(f"{api}/api/v2/ai/actions", service=service) or {}
    return [a["id"] for a in found.get("actions", [])]


def surge(api: str, seconds: float) -> dict[str, Any]:
    drains = drain_ids(api)
    client = Client(api, LoadConfig(rate=SURGE_RATE, duration_s=seconds, services=("checkout",)))
    summary = client.join()
    time.sleep(60)  # the next ingestion and the watch see its end too
    new = sorted(r for i, r in drain_ids(api).items() if i not in drains)
    return {"seconds": seconds, "drains": new, "client": summary}


def run_arm(arm: str, warmup: float, fault_s: float, repeat: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"incident-{arm}-"))
    try:
        with (
            alertmanager(root / "alertmanager") as alerts_url,
            platform(root, arm, alerts_url) as api,
        ):
            say(f"{arm}: the fleet is up at {api}; warming up {warmup:.0f} s")
            time.sleep(warmup)
            incidents = []
            for round_ in range(repeat):
                for kind, first, fault in FAULTS:
                    # Another replica each round: a replica drained in the last 15 minutes is
                    # rate-limited (anti-flap), which is not what this measures.
                    service, index = first.rsplit("-", 1)
                    replica = f"{service}-{(int(index) + round_) % 3}"
                    found = incident(api, alerts_url, kind, replica, fault, fault_s)
                    say(f"{arm} #{round_ + 1}: {json.dumps(asdict(found))}")
                    incidents.append(asdict(found))
                    time.sleep(30)
            surged = surge(api, 120)
            say(f"{arm}: surge {json.dumps(surged)}")
            return {"arm": arm, "incidents": incidents, "surge": surged}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the report ---------------------------------------------------------------------------


def median(values: list[float | None] | None) -> str:
    if values is None:
        return "-"
    seen = [v for v in values if v is not None]
    if not seen:
        return "missed"
    missed = len(values) - len(seen)
    text = f"{statistics.median(seen):.0f} s"
    return text if not missed else f"{text} ({missed} of {len(values)} missed)"


STEPS = (
    ("first anomaly of the replica", "anomaly_s", "≤ 60 s"),
    ("ServiceAnomaly alert in Alertmanager", "anomaly_alert_s", "≤ 90 s"),
    ("HealingAction (drain) alert in Alertmanager", "drain_alert_s", "≤ 90 s"),
    ("replica drained in RelayCore", "drain_s", "≤ 90 s"),
    ("restore after the fault's end", "restore_after_end_s", "-"),
)


def kept(incidents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for i in incidents if i["kind"] == kind]


def step(incidents: list[dict[str, Any]], kind: str, key: str) -> list[float | None] | None:
    """One step's times over the incidents of a kind; a restore only where it was drained
    (None: no drain, so nothing to restore)."""
    found = [i for i in incidents if i["kind"] == kind]
    if key == "restore_after_end_s":
        found = [i for i in found if i["drain_s"] is not None]
    return [i[key] for i in found] or None


def table(results: dict[str, dict[str, Any]]) -> str:
    arms = list(results)
    lines = [f"| fault | step | {' | '.join(arms)} | target |", "|---" * (len(arms) + 3) + "|"]
    for kind, _, _ in FAULTS:
        for label, key, target in STEPS:
            cells = [median(step(results[a]["incidents"], kind, key)) for a in arms]
            lines.append(f"| {kind} | {label} | {' | '.join(cells)} | {target} |")
        for metric in ("p99_ms", "error_rate"):
            cells = []
            for a in arms:
                values = [i["client"][metric] for i in results[a]["incidents"] if i["kind"] == kind]
                values = [v for v in values if v is not None]
                cells.append(f"{statistics.median(values):.4g}" if values else "-")
            lines.append(f"| {kind} | client {metric} during the fault | {' | '.join(cells)} | |")
        others = [
            sorted({r for i in kept(results[a]["incidents"], kind) for r in i["other_drains"]})
            for a in arms
        ]
        lines.append(f"| {kind} | other replicas drained | {' | '.join(map(str, others))} | none |")
    surges = [str(results[a]["surge"]["drains"]) for a in arms]
    lines.append(f"| surge x3 | replicas drained | {' | '.join(surges)} | none |")
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    if not {"on", "off"} <= set(results):
        return []
    out = []
    for kind, _, _ in FAULTS:
        p99 = {
            a: statistics.median(
                i["client"]["p99_ms"] for i in results[a]["incidents"] if i["kind"] == kind
            )
            for a in ("on", "off")
        }
        out.append(
            f"{kind}: client p99 on/off = {p99['on'] / p99['off']:.3f} ({p99['on']:.0f} vs {p99['off']:.0f} ms)"
        )
    return out


def merged(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The arms of several saved runs: an arm's incidents add up, its last surge is kept."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        for arm, result in run.items():
            kept = out.setdefault(arm, {"arm": arm, "incidents": [], "surge": result["surge"]})
            kept["incidents"] += [
                {"firing_before": [], "actions": [], **i} for i in result["incidents"]
            ]
            kept["surge"] = result["surge"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default="on,off", help="on, off or both (on,off)")
    parser.add_argument("--warmup", type=float, default=600.0, help="seconds, at most 600")
    parser.add_argument("--fault-s", type=float, default=90.0, help="each fault's duration")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the two faults, 1..5")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--report", type=Path, nargs="+", help="print the table of saved --json results, no run"
    )
    args = parser.parse_args()
    if args.report:
        saved = merged([json.loads(path.read_text()) for path in args.report])
        print(table(saved))
        print("\n".join(ratios(saved)))
        return
    arms = [a for a in args.arms.split(",") if a]
    if not set(arms) <= set(ARMS) or not 0 < args.warmup <= 600 or not 1 <= args.repeat <= 5:
        parser.error("--arms takes on and off, --warmup 1..600 s, --repeat 1..5")
    if not 10 <= args.fault_s <= 600:
        parser.error("--fault-s must be 10..600 s")
    if shutil.which(ALERTMANAGER) is None:
        parser.error(f"{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager")
    results = {arm: run_arm(arm, args.warmup, args.fault_s, args.repeat) for arm in arms}
    print(table(results))
    for line in ratios(results):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
