"""A stand-in `automatrix up` for the supervisor's tests: the real Supervisor and its loop, with
tiny children (`python -c`) in place of Prefect, MLflow and the API.

    python -m tests.support.supervised kill|crash|stop|unready|deploy FOLDER [PORT]

It prints one JSON line with the pids (its own, the reaper's, the children's) once every child
is started, then supervises until SIGTERM or a give-up, and exits with the loop's status.
`unready` waits (1 s) for a child that talks but never answers http://127.0.0.1:PORT/health;
`deploy` runs up's real `deploy` against a Prefect API at 127.0.0.1:PORT (a closed port)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from serving.cli.platform import deploy, url_answers
from serving.cli.supervisor import RestartPolicy, Supervisor, run

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
# A child that starts a grandchild in a session of its own, as Prefect's process worker does.
SPAWN = [
    sys.executable,
    "-c",
    "import subprocess, sys, time\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
    " start_new_session=True)\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(p.pid))\n"
    "__import__('os').rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(60)",
]
CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
# A child that says what it does, then never listens: it never becomes ready.
TALK = [
    sys.executable,
    "-c",
    "import time; print('loading the model', flush=True); print('binding :8000', flush=True);"
    " time.sleep(60)",
]


def main(mode: str, folder: Path, port: int = 0) -> int:
    policy = RestartPolicy(first_delay_s=0.05, max_delay_s=0.1, max_crashes=3, window_s=60)
    supervisor = Supervisor(dict(os.environ), policy=policy, reaper_grace_s=2.0)

    def start() -> None:
        if mode == "unready":
            talker = supervisor.start("talker", TALK)
            health = f"http://127.0.0.1:{port}/health"
            supervisor.wait_ready(talker, url_answers(health), 1.0, f"answer {health}")
        if mode == "deploy":
            supervisor.env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            supervisor.env["PREFECT_HOME"] = str(folder / "prefect")
            deploy(supervisor)
        supervisor.start("first", SLEEP)
        second = SPAWN + [str(folder / "grandchild")] if mode == "kill" else SLEEP
        supervisor.start("second", CRASH if mode == "crash" else second)
        pids = {child.name: child.process.pid for child in supervisor.children}
        ids = {"self": os.getpid(), "reaper": supervisor.reaper_pid, **pids}
        print(json.dumps(ids), flush=True)

    return run(supervisor, start, lambda: print("[test] before stop", flush=True), interval=0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), *(int(a) for a in sys.argv[3:4])))
