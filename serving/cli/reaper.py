"""The safety net of `automatrix up`: when `up` dies, even by `kill -9`, every process it started,
and every process those started, is stopped.

`up` starts this script (stdlib only, so it starts in a few tens of milliseconds) with a pipe on its
stdin whose only writer is `up`, and a marker that `up` puts in every child's environment. When
the pipe reaches end of file (`up` exited, however it died), the script sends SIGTERM to every
process whose environment carries the marker, waits a grace period, then sends SIGKILL to those
left. The environment is inherited through fork and exec, so the sweep reaches grandchildren that
left their parent's process group or session, such as Prefect's flow-run processes, which the
process worker starts in sessions of their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

MARKER_VARIABLE = "AUTOMATRIX_SUPERVISOR"


def marked_pids(marker: str, proc: Path = Path("/proc")) -> list[int]:
    """The live processes, other than this one, whose environment holds `MARKER_VARIABLE=marker`."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if needle in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


def sweep(marker: str, grace: float) -> int:
    """SIGTERM to every marked process, SIGKILL after `grace` s to those left; how many there were."""
    first = marked_pids(marker)
    _signal_all(first, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked_pids(marker):
        time.sleep(0.1)
    _signal_all(marked_pids(marker), signal.SIGKILL)
    return len(first)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def main(argv: list[str]) -> int:
    marker, grace = argv[1], float(argv[2])
    # Ctrl-C and a stop of `up` are for `up` to handle; this process only waits for it to end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    left = sweep(marker, grace)
    if left:
        print(f"[automatrix] up is gone: stopped {left} process(es) it left", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
