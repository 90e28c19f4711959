"""`automatrix up`: its parts that talk to a real Prefect server (the test harness), and its
supervisor, with real processes (tiny `python -c` children, tests/support/supervised.py)."""

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

import prefect
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.states import Pending, Running, Scheduled

from flows.train import train_flow
from flows.train_capacity import train_capacity_flow
from serving.cli.flowruns import cancel_in_flight
from serving.cli.platform import set_training_schedules
from serving.cli.supervisor import GaveUp, RestartPolicy, Supervisor
from tests.support.net import free_port
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]


async def _deploy() -> list[UUID]:
    made = []
    for flow, name, cron in (
        (train_flow, "daily", "0 3 * * *"),
        (train_capacity_flow, "daily-capacity", "30 3 * * *"),
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
def test_training_disabled_pauses_both_training_schedules_and_enabled_resumes_them() -> None:
    ids = asyncio.run(_deploy())
    try:
        set_training_schedules(active=False)
        assert asyncio.run(_paused(ids)) == [True, True]
        set_training_schedules(active=True)
        assert asyncio.run(_paused(ids)) == [False, False]
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
