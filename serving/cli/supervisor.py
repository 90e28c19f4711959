"""The supervisor of `automatrix up`: starts the children, restarts a crashed one with exponential
backoff, gives up after repeated crashes, and makes sure that no child outlives `up`.

What is guaranteed about the children's lifetime (Linux):
- each child runs in its own session, so a Ctrl-C in the terminal reaches `up` alone, which then
  stops the children in reverse order of start;
- each child is started with PR_SET_PDEATHSIG(SIGTERM): the kernel signals it the moment `up`
  dies, `kill -9` included;
- the reaper (reaper.py), a small process of its own, sees `up` end and then stops every process
  that carries `up`'s marker in its environment (children and grandchildren, whatever their
  process group or session), SIGKILL after a grace period.
A process that clears its environment and escapes its parent's group is out of reach, and so is
everything if the reaper itself is killed together with `up` (both by `kill -9`): then PDEATHSIG
still stops the direct children.

Each child's output goes through `up` to its own stdout, line by line, and its last lines are
kept, so that a child that does not become ready is reported with what it said last.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from serving.cli import reaper

PR_SET_PDEATHSIG = 1  # linux/prctl.h
TAIL_LINES = 20  # of each child's output, kept for the message when it fails to start


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a crashed child, and when to stop trying (pure: times in, delay out)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 300.0

    def delay(self, crashes: Sequence[float]) -> float | None:
        """The wait before the next start, given the crash times (latest last); None: give up.

        Each crash within the window doubles the wait; old crashes age out of the window, so a
        child that ran well for a while starts again from `first_delay_s`."""
        recent = [t for t in crashes if crashes[-1] - t < self.window_s]
        if len(recent) >= self.max_crashes:
            return None
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** (len(recent) - 1)))


class GaveUp(Exception):
    """A child crashed too often; the message says which and how often."""


class StartFailed(Exception):
    """A step of the start-up failed (a child not ready in time, a command that failed); the
    message says what, and where to look (the log file or the last lines of its output)."""


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None

    def last_lines(self, count: int = 3) -> str:
        """Its last non-empty output lines, on one line."""
        return last_lines(self.tail, count)


@dataclass
class Supervisor:
    """Starts child processes in their own sessions, restarts them and stops them all on exit."""

    env: dict[str, str]
    policy: RestartPolicy = RestartPolicy()
    reaper_grace_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    children: list[Child] = field(default_factory=list)
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    _reaper: subprocess.Popen[bytes] | None = None

    @property
    def reaper_pid(self) -> int | None:
        return self._reaper.pid if self._reaper else None

    def start(self, name: str, command: Sequence[str]) -> Child:
        if self._reaper is None:
            self._reaper = self._start_reaper()
        say(f"starting {name}: {' '.join(command)}")
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        child = Child(name, list(command), self._spawn(command, tail), tail)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Restarts the children that are due; raises GaveUp when one crashed too often."""
        for child in self.children:
            if child.restart_at is not None:
                if self.clock() >= child.restart_at:
                    child.process = self._spawn(child.command, child.tail)
                    child.restart_at = None
            elif child.process.poll() is not None:
                self._crashed(child)

    def wait_ready(
        self, child: Child, ready: Callable[[], bool], timeout: float, what: str
    ) -> None:
        """Waits until `ready()` (restarting crashed children meanwhile); raises StartFailed,
        with the child's last output lines, if it is not ready within `timeout` seconds."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            self.check()
            if ready():
                return
            time.sleep(0.5)
        said = child.last_lines()
        raise StartFailed(
            f"{child.name} did not {what} within {timeout:g} s"
            + (f"; its last lines: {said}" if said else "; it printed nothing")
        )

    def _crashed(self, child: Child) -> None:
        child.crashes.append(self.clock())
        code = describe_exit(child.process.returncode)
        delay = self.policy.delay(child.crashes)
        if delay is None:
            policy = self.policy
            said = child.last_lines()
            raise GaveUp(
                f"{child.name} {code}: {policy.max_crashes} crashes within"
                f" {policy.window_s:g} s; giving up"
                + (f" (its last lines: {said})" if said else "")
            )
        child.restart_at = self.clock() + delay
        say(f"{child.name} {code}; restarting in {delay:g} s")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to each child's group in reverse order of start, SIGKILL after `grace` s;
        then what the children left behind (a flow run's process) is swept up too."""
        for child in reversed(self.children):
            child.restart_at = None
            if child.process.poll() is None:
                say(f"stopping {child.name}")
                _signal_group(child.process, signal.SIGTERM)
                try:
                    child.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(child.process, signal.SIGKILL)
                    child.process.wait()
        reaper.sweep(self.marker, grace)
        if self._reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.communicate(timeout=grace)  # ends its stdin: it sweeps once more
            self._reaper = None

    def run_once(
        self, command: Sequence[str], cwd: Path | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Runs a one-off command (a start-up step) to its end, its output captured; like a
        child, it carries the marker and PDEATHSIG, so it dies with `up` too."""
        if self._reaper is None:
            self._reaper = self._start_reaper()
        return subprocess.run(
            list(command),
            env=self.marked_env(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            preexec_fn=_die_with_parent(os.getpid()),
        )

    def marked_env(self) -> dict[str, str]:
        return {**self.env, reaper.MARKER_VARIABLE: self.marker}

    def _spawn(self, command: Sequence[str], tail: deque[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(command),
            env=self.marked_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        assert process.stdout is not None
        threading.Thread(target=_relay, args=(process.stdout, tail), daemon=True).start()
        return process

    def _start_reaper(self) -> subprocess.Popen[bytes]:
        script = Path(reaper.__file__)
        return subprocess.Popen(
            [sys.executable, str(script), self.marker, str(self.reaper_grace_s)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )


def run(
    supervisor: Supervisor,
    start: Callable[[], None],
    before_stop: Callable[[], None],
    interval: float = 0.5,
) -> int:
    """Calls `start` (it starts the children), then watches them until Ctrl-C or SIGTERM, or
    until one crashes too often. On Ctrl-C or SIGTERM `before_stop` runs first, while every child
    is still up. Every child is stopped in the end. The exit status: 0 after Ctrl-C or SIGTERM,
    1 after giving up."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        start()
        while True:
            supervisor.check()
            time.sleep(interval)  # short, so that a backoff of 1 s is kept to
    except KeyboardInterrupt:
        say("Ctrl-C or SIGTERM: stopping")
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C skips to the stop
            before_stop()
        return 0
    except (GaveUp, StartFailed) as exc:
        say(f"{exc}; stopping everything")
        return 1
    finally:
        supervisor.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _relay(stream: IO[bytes], tail: deque[str]) -> None:
    """Copies a child's output to ours line by line, keeping its last lines in `tail`."""
    out = sys.stdout
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        tail.append(line.rstrip("\n"))
        with contextlib.suppress(OSError, ValueError):  # our stdout closed: keep the tail only
            out.write(line)
            out.flush()
    stream.close()


def last_lines(lines: Iterable[str], count: int = 3, width: int = 300) -> str:
    """The last `count` non-empty lines, each cut to `width` characters, joined on one line."""
    kept = [line.strip()[:width] for line in lines if line.strip()]
    return " | ".join(kept[-count:])


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: the kernel sends SIGTERM to the child when the thread that forked it ends
    (`up` starts every child from its main thread, so: when `up` ends)."""
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

    def arm() -> None:
        if libc is None:
            return
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # `up` died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def say(line: str) -> None:
    print(f"[automatrix] {line}", flush=True)
