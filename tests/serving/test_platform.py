"""`automatrix up`: its parts that talk to a real Prefect server (the test harness), its
supervisor, with real processes (tiny `python -c` children, tests/support/supervised.py), the
settings it gives the demo, and one full `up` with the demo fleet."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import prefect
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.states import Pending, Running, Scheduled

from flows.train import train_flow
from flows.train_capacity import train_capacity_flow
from flows.train_failure import train_failure_flow
from flows.train_relaycore import train_relaycore_flow
from monitoring.config import AlertSettings, OrchestratorSettings
from serving.cli import ports
from serving.cli.flowruns import cancel_in_flight
from serving.cli.platform import (
    TRAINING_DEPLOYMENTS,
    Demo,
    demo_settings,
    fleet_refusal,
    hide_password,
    set_training_schedules,
)
from serving.cli.supervisor import GaveUp, RestartPolicy, Supervisor
from serving.settings import ServingSettings
from tests.support.net import free_port
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]


async def _deploy() -> list[UUID]:
    made = []
    for flow, name, cron in (
        (train_flow, "daily", "0 3 * * *"),
        (train_capacity_flow, "daily-capacity", "30 3 * * *"),
        (train_failure_flow, "daily-failure-risk", "45 3 * * *"),
        (train_relaycore_flow, "daily-relaycore-policy", "15 4 * * *"),
    ):
        deployment = await flow.ato_deployment(name=name, schedule=CronSchedule(cron=cron))
        made.append(await deployment.apply())
    return made


async def _paused(ids: list[UUID]) -> list[bool]:
    async with get_client() as client:
        return [bool((await client.read_deployment(i)).paused) for i in ids]


async def _delete(ids: list[UUID]) -> None:
    async with get_client() as client:
        for deployment_id in ids:
            await client.delete_deployment(deployment_id)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_training_disabled_pauses_every_training_schedule_and_enabled_resumes_them() -> None:
    ids = asyncio.run(_deploy())
    assert len(ids) == len(TRAINING_DEPLOYMENTS)
    try:
        set_training_schedules(active=False)
        assert asyncio.run(_paused(ids)) == [True] * len(ids)
        set_training_schedules(active=True)
        assert asyncio.run(_paused(ids)) == [False] * len(ids)
    finally:
        asyncio.run(_delete(ids))


@prefect.flow
def _stand_in() -> None:
    """The flow of the runs that the cancellation test puts in each state; it never runs."""


async def _runs_in_each_state(pool: str) -> dict[str, UUID]:
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        deployment = await _stand_in.ato_deployment(name="stand-in", work_pool_name=pool)
        deployment_id = await deployment.apply()
        now = datetime.now(UTC)
        states = {
            "running": Running(),
            "pending": Pending(),
            "late": Scheduled(scheduled_time=now - timedelta(hours=1)),
            "future": Scheduled(scheduled_time=now + timedelta(hours=1)),
        }
        runs = {}
        for name, state in states.items():
            run = await client.create_flow_run_from_deployment(deployment_id, state=state)
            runs[name] = run.id
        return runs


async def _state_types(runs: dict[str, UUID]) -> dict[str, StateType | None]:
    async with get_client() as client:
        found = {name: await client.read_flow_run(i) for name, i in runs.items()}
        return {name: run.state.type if run.state else None for name, run in found.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_cancel_in_flight_cancels_running_pending_and_late_runs_and_keeps_future_ones() -> None:
    runs = asyncio.run(_runs_in_each_state("cancel-test"))
    # No worker here: the Cancelling state finds nobody to end the runs, so the bound decides.
    cancelled = cancel_in_flight("cancel-test", wait_s=0.5)
    assert len(cancelled) == 3
    assert asyncio.run(_state_types(runs)) == {
        "running": StateType.CANCELLED,
        "pending": StateType.CANCELLED,
        "late": StateType.CANCELLED,
        "future": StateType.SCHEDULED,
    }


def test_restart_policy_doubles_the_delay_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=4, max_crashes=10, window_s=300)
    assert [policy.delay([0.0] * n) for n in range(1, 5)] == [1, 2, 4, 4]


def test_restart_policy_gives_up_after_max_crashes_within_the_window() -> None:
    policy = RestartPolicy(max_crashes=5, window_s=300)
    assert policy.delay([0, 10, 20, 30]) == 8
    assert policy.delay([0, 10, 20, 30, 299]) is None


def test_restart_policy_forgets_crashes_older_than_the_window() -> None:
    policy = RestartPolicy(max_crashes=5, window_s=300)
    assert policy.delay([0, 10, 20, 30, 400]) == 1


def _alive(pid: int) -> bool:
    """Running, not a zombie: an orphan's zombie waits for a reaper that may never come here."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    policy = RestartPolicy(first_delay_s=0.2, max_delay_s=0.4, max_crashes=4, window_s=60)
    made = Supervisor(dict(os.environ), policy=policy, reaper_grace_s=2.0)
    yield made
    made.stop(grace=2.0)


def test_restart_crashed_child_with_backoff_while_the_others_run(
    supervisor: Supervisor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starts = tmp_path / "starts"
    code = "import sys, time; open(sys.argv[1], 'a').write(f'{time.monotonic()}\\n'); sys.exit(3)"
    supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.start("crasher", [sys.executable, "-c", code, str(starts)])
    steady = supervisor.children[0].process

    def started_three_times() -> bool:
        supervisor.check()
        return starts.exists() and len(starts.read_text().split()) >= 3

    wait_for(started_three_times, timeout=10)
    times = [float(t) for t in starts.read_text().split()]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4
    lines = [line for line in capsys.readouterr().out.splitlines() if "restarting" in line]
    assert lines[:2] == [
        "[automatrix] crasher exited with code 3; restarting in 0.2 s",
        "[automatrix] crasher exited with code 3; restarting in 0.4 s",
    ]
    assert steady.poll() is None and supervisor.children[0].process is steady


def test_give_up_child_crashing_repeatedly_within_the_window(supervisor: Supervisor) -> None:
    supervisor.start("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(GaveUp, match="crasher exited with code 3: 4 crashes within 60 s"):
        wait_for(lambda: supervisor.check(), timeout=10)  # check() returns None until it raises


def test_give_up_says_what_the_crashing_child_printed_last(supervisor: Supervisor) -> None:
    code = "import sys; print('error: API_KEY refused', flush=True); sys.exit(1)"
    supervisor.start("fleet", [sys.executable, "-c", code])
    with pytest.raises(GaveUp) as gave_up:
        wait_for(lambda: supervisor.check(), timeout=10)
    assert str(gave_up.value) == (
        "fleet exited with code 1: 4 crashes within 60 s; giving up"
        " (its last lines: error: API_KEY refused | error: API_KEY refused"
        " | error: API_KEY refused)"
    )


def _supervised(mode: str, folder: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.supervised", mode, str(folder)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    while line and not line.startswith("{"):  # after the "starting" lines
        line = process.stdout.readline()
    return process, json.loads(line)


def test_give_up_stops_the_other_children_and_exits_1(tmp_path: Path) -> None:
    process, pids = _supervised("crash", tmp_path)
    assert process.wait(timeout=20) == 1
    out = process.stdout.read() if process.stdout else ""
    assert "second exited with code 3: 3 crashes within 60 s; giving up; stopping everything" in out
    assert not _alive(pids["first"])


def test_sigterm_runs_before_stop_then_stops_children_in_reverse_order(tmp_path: Path) -> None:
    process, pids = _supervised("stop", tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    out = process.stdout.read().splitlines() if process.stdout else []
    order = [line for line in out if "before stop" in line or "stopping " in line]
    assert order == [
        "[test] before stop",
        "[automatrix] stopping second",
        "[automatrix] stopping first",
    ]
    assert not _alive(pids["first"]) and not _alive(pids["second"])


def test_kill_9_of_supervisor_stops_children_and_grandchild_in_own_session(tmp_path: Path) -> None:
    process, pids = _supervised("kill", tmp_path)
    marker = tmp_path / "grandchild"
    wait_for(marker.exists, timeout=10)
    grandchild = int(marker.read_text())
    process.kill()
    process.wait()
    try:
        wait_for(lambda: not any(map(_alive, (pids["first"], pids["second"], grandchild))), 5)
    finally:
        for pid in (pids["first"], pids["second"], grandchild):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_kill_9_of_supervisor_and_reaper_still_stops_children_by_pdeathsig(
    tmp_path: Path,
) -> None:
    process, pids = _supervised("stop", tmp_path)
    os.kill(pids["reaper"], signal.SIGKILL)
    process.kill()
    process.wait()
    wait_for(lambda: not _alive(pids["first"]) and not _alive(pids["second"]), timeout=5)


def test_up_with_a_taken_port_exits_2_naming_the_port_and_its_holder(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PREFECT_PORT": str(port),
            "MLFLOW_PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "PREFECT_HOME": str(tmp_path / "prefect"),
        }
        done = subprocess.run(
            [str(Path(sys.executable).with_name("automatrix")), "up"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    line = f"[automatrix] port {port} (PREFECT_PORT) on 127.0.0.1 is taken by pid {os.getpid()} ("
    assert done.stdout.startswith(line) and len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and not (tmp_path / "prefect").exists()


# --- what `up` sets for the demo -----------------------------------------------------------

DEMO_VARIABLES = (
    "HOST",
    "API_PORT",
    "INGEST_SOURCE",
    "PROMETHEUS_URL",
    "SCRAPE_TARGETS",
    "HEALING_MODE",
    "HEALING_WATCH_SECONDS",
    "ORCHESTRATOR_API_URL",
    "ALERTMANAGER_URL",
    "ALERT_WEBHOOK_URL",
)


def _demo(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fleet: bool = True) -> Demo:
    for name in DEMO_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"API_PORT": "8123", **env}.items():
        monkeypatch.setenv(name, value)
    return demo_settings(
        ServingSettings(_env_file=None),  # type: ignore[call-arg]
        OrchestratorSettings(_env_file=None),  # type: ignore[call-arg]
        AlertSettings(_env_file=None),  # type: ignore[call-arg]
        fleet=fleet,
        chaos=True,
    )


def test_demo_scrapes_the_fleet_heals_for_real_and_points_the_flow_at_its_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = _demo(monkeypatch, {})
    assert demo.values == {
        "ORCHESTRATOR_API_URL": "http://127.0.0.1:8123",
        "INGEST_SOURCE": "scrape",
        "HEALING_MODE": "auto",
        "HEALING_WATCH_SECONDS": "10",
    }
    assert demo.kept == {}


def test_demo_keeps_every_setting_the_user_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PROMETHEUS_URL": "http://127.0.0.1:9090",
        "HEALING_MODE": "dry_run",
        "HEALING_WATCH_SECONDS": "0",
        "ORCHESTRATOR_API_URL": "http://127.0.0.1:9999",
        "ALERTMANAGER_URL": "http://127.0.0.1:9093",
    }
    demo = _demo(monkeypatch, env)
    assert demo.values == {}
    assert demo.kept == {
        "ORCHESTRATOR_API_URL": "http://127.0.0.1:9999",
        "INGEST_SOURCE": "prometheus",
        "HEALING_MODE": "dry_run",
        "HEALING_WATCH_SECONDS": "0",
        "ALERTMANAGER_URL": "http://127.0.0.1:9093",
    }


def test_no_fleet_leaves_the_source_and_healing_at_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = _demo(monkeypatch, {"HOST": "0.0.0.0"}, fleet=False)
    assert demo.values == {"ORCHESTRATOR_API_URL": "http://127.0.0.1:8123"}


def test_fleet_is_refused_beside_an_api_bound_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "10.1.2.3")
    refusal = fleet_refusal(ServingSettings(_env_file=None))  # type: ignore[call-arg]
    assert refusal == "HOST=10.1.2.3 is not a loopback address; the fleet runs on 127.0.0.1 only"
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert fleet_refusal(ServingSettings(_env_file=None)) is None  # type: ignore[call-arg]


def test_start_up_lines_hide_a_urls_password() -> None:
    assert hide_password("http://am:s3cret@127.0.0.1:9093") == "http://am:***@127.0.0.1:9093"
    assert hide_password("http://127.0.0.1:9093") == "http://127.0.0.1:9093"


# --- `automatrix up` for real ----------------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _endpoints(api: str) -> list[dict]:
    try:
        found = httpx.get(f"{api}/api/v2/relaycore/endpoints", timeout=5)
    except httpx.HTTPError:
        return []
    return list(found.json()) if found.is_success else []


@pytest.mark.slow
def test_up_runs_the_demo_fleet_in_relaycore_and_its_children_die_with_it(
    tmp_path: Path,
) -> None:
    """The one full `up`: Prefect, MLflow, the API and the fleet, on free ports and a private
    store; the fleet's six replicas are registered, the children got up's settings (an exported
    ALERTMANAGER_URL kept), and a `kill -9` of up takes the API and the replicas with it."""
    alertmanager = f"http://127.0.0.1:{free_port()}"
    api_port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PREFECT_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "API_PORT": str(api_port),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'automatrix.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{tmp_path / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(tmp_path / "models"),
        "ALERTMANAGER_URL": alertmanager,
    }
    for name in (
        "HEALING_MODE",
        "HEALING_WATCH_SECONDS",
        "INGEST_SOURCE",
        "ORCHESTRATOR_API_URL",
        "API_KEY",
    ):
        env.pop(name, None)
    api = f"http://127.0.0.1:{api_port}"
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [str(Path(sys.executable).with_name("automatrix")), "up", "--no-seed"],
            env=env,
            cwd=REPO,  # prefect.yaml
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    children: list[int] = []
    try:
        wait_for(lambda: up.poll() is not None or len(_endpoints(api)) == 6, 240, 0.5)
        assert up.poll() is None, log.read_text()[-3000:]
        endpoints = _endpoints(api)
        assert sorted(e["service"] for e in endpoints) == ["checkout"] * 3 + ["search"] * 3
        assert all(e["url"].startswith("http://127.0.0.1:") for e in endpoints)
        replicas = [ports.holder(int(e["url"].split(":")[2].split("/")[0])) for e in endpoints]
        api_holder = ports.holder(api_port)
        assert api_holder is not None and all(replicas)
        children = [api_holder[0], *(found[0] for found in replicas if found)]
        seen = _environ(api_holder[0])
        assert seen["ORCHESTRATOR_API_URL"] == api and seen["ALERTMANAGER_URL"] == alertmanager
        assert seen["INGEST_SOURCE"] == "scrape" and seen["HEALING_MODE"] == "auto"
        said = log.read_text()
        assert (
            f"[automatrix] up sets for every child (export one to change it):"
            f" ORCHESTRATOR_API_URL={api} INGEST_SOURCE=scrape HEALING_MODE=auto"
            " HEALING_WATCH_SECONDS=10"
        ) in said
        assert f"[automatrix] kept as you set them: ALERTMANAGER_URL={alertmanager}" in said
        up.kill()
        up.wait()
        wait_for(lambda: not any(map(_alive, children)), 20, 0.2)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
