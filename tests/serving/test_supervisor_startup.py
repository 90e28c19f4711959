"""`automatrix up` when a step of its start-up fails: a child that never becomes ready, or a
`prefect` command that fails. One line says what failed and where its output is, the exit status
is 1, and there is no Python traceback. Real processes: tests/support/supervised.py runs the real
Supervisor and up's real `deploy` (the real `prefect` command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.cli.platform import deploy
from serving.cli.supervisor import StartFailed, Supervisor, last_lines
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def _supervised(mode: str, folder: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.support.supervised", mode, str(folder), str(port)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """up's own lines, without the children's output that it relays."""
    return [line for line in done.stdout.splitlines() if line.startswith("[automatrix] ")]


def test_child_not_ready_in_time_exits_1_with_one_line_of_its_last_output(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the child is never ready
    done = _supervised("unready", tmp_path, port)
    assert done.returncode == 1, done.stderr
    failed = [line for line in _said(done) if "did not answer" in line]
    assert failed == [
        f"[automatrix] talker did not answer http://127.0.0.1:{port}/health within 1 s;"
        " its last lines: loading the model | binding :8000; stopping everything"
    ]
    assert "[automatrix] stopping talker" in _said(done)
    assert "Traceback" not in done.stderr + done.stdout


def test_failed_prefect_command_exits_1_naming_it_its_last_lines_and_its_log(
    tmp_path: Path,
) -> None:
    done = _supervised("deploy", tmp_path, free_port())  # no Prefect API on that port
    assert done.returncode == 1, done.stderr
    log = tmp_path / "prefect" / "deploy.log"
    [line] = _said(done)  # the one line, and nothing started
    assert line.startswith(
        "[automatrix] `prefect work-pool create automatrix --type process --overwrite` failed"
        " with exit code 1: "
    )
    assert "httpx.ConnectError: All connection attempts failed" in line
    assert line.endswith(f"(its whole output: {log}); stopping everything")
    assert "Traceback" not in done.stderr and "Traceback" in log.read_text()


def test_last_lines_keeps_the_last_non_empty_lines_on_one_line() -> None:
    assert last_lines(["a", "", "  b  ", "c", "\n"], count=2) == "b | c"
    assert last_lines(["x" * 500], width=10) == "x" * 10
    assert last_lines([]) == ""


BROKEN = """name: automatrix
deployments:
  - name: every-minute
    entrypoint: flows/missing.py:no_such_flow
    work_pool:
      name: automatrix
"""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_deploy_of_a_broken_prefect_yaml_raises_start_failed_with_its_output(
    tmp_path: Path,
) -> None:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "prefect.yaml").write_text(BROKEN)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    supervisor = Supervisor({**env, "PREFECT_HOME": str(tmp_path / "home")}, reaper_grace_s=2.0)
    try:
        with pytest.raises(StartFailed) as failed:
            deploy(supervisor, cwd=tmp_path)
    finally:
        supervisor.stop(grace=2.0)
    message = str(failed.value)
    assert message.startswith("`prefect --no-prompt deploy --all` failed with exit code 1: ")
    assert message.endswith(f"(its whole output: {tmp_path / 'home' / 'deploy.log'})")
    assert "flows/missing.py" in (tmp_path / "home" / "deploy.log").read_text()
