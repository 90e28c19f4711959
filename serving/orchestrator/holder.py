"""A registered model's state kept current on its alias: the holder the decision models share.

The capacity forecaster and the failure risk each hold one. A missing or unreadable version
leaves the last good state in place; with no state at all, the caller's own fallback answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from monitoring.neuroweaver import registry

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class AliasHolder(Generic[T]):
    """`load(version)` turns a registered version into the state; `fallback` says what answers
    while there is none."""

    name: str
    load: Callable[[str], T]
    fallback: str
    alias: str = "champion"
    current: T | None = None
    version: str | None = None
    problem: str | None = None
    _reloading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.problem is None and self.current is None:
            self.problem = f"{self.name} has not been loaded yet"

    def reload(self) -> bool:
        """Blocking: loads a newly aliased version; True when one was swapped in."""
        with self._reloading:
            try:
                version = registry.resolve_alias(self.name, self.alias)
            except (registry.NoChampion, registry.RegistryUnreachable) as exc:
                self.problem = str(exc)
                return False
            if version == self.version:
                return False
            try:
                state = self.load(version)
            except registry.ModelLoadError as exc:
                self.problem = f"{self.name} version {version} was refused: {exc}"
                kept = f"version {self.version} stays" if self.version else self.fallback
                log.error("%s; %s", self.problem, kept)
                return False
            self.current, self.version, self.problem = state, version, None
            log.info("%s version %s (@%s) now answers", self.name, version, self.alias)
            return True


async def poll(holder: AliasHolder[T], interval: float) -> None:
    """Checks the alias every `interval` seconds, off the event loop, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(holder.reload)
        except Exception:  # the poller must outlive any surprise
            log.exception("%s reload failed; the current state stays", holder.name)
