"""Is a port free for `automatrix up`, and if not, which process holds it (Linux /proc, no psutil)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

LISTEN = "0A"  # the TCP_LISTEN state in /proc/net/tcp


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now. SO_REUSEADDR, as uvicorn sets it, so that
    a socket of the last run still in TIME_WAIT does not count as taken."""
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def listening_inodes(port: int, tables: Iterable[str]) -> set[int]:
    """The socket inodes listening on `port`, from the text of /proc/net/tcp and tcp6."""
    inodes = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def holder(port: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """(pid, command line) of a process that listens on `port`, when this user can see it."""
    tables = []
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            tables.append((proc / "net" / name).read_text())
    targets = {f"socket:[{inode}]" for inode in listening_inodes(port, tables)}
    if not targets:
        return None
    for entry in proc.iterdir():
        if entry.name.isdigit() and _holds(entry, targets):
            return int(entry.name), _command(entry)
    return None


def _holds(process: Path, targets: set[str]) -> bool:
    try:
        return any(os.readlink(fd) in targets for fd in (process / "fd").iterdir())
    except OSError:  # gone meanwhile, or another user's
        return False


def _command(process: Path) -> str:
    with contextlib.suppress(OSError):
        return (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return "?"


def taken(host: str, ports: Mapping[str, int]) -> list[str]:
    """One line per taken port, naming it, the setting that moves it and who holds it."""
    lines = []
    for setting, port in ports.items():
        if port_free(host, port):
            continue
        found = holder(port)
        who = f"pid {found[0]} ({found[1].strip()})" if found else "a process this user cannot see"
        lines.append(f"port {port} ({setting}) on {host} is taken by {who}")
    return lines
