"""The served failure risk: `failure-risk@champion`'s state, kept current.

The insights and the on-demand cycle read the learned risk from here. A missing or unreadable
version leaves the last good state in place; with no state at all, the hand-set rule answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from monitoring.assess import failure_model
from monitoring.assess.failure_model import MODEL_NAME, RiskModel
from monitoring.neuroweaver import registry

log = logging.getLogger(__name__)


@dataclass
class RiskHolder:
    name: str = MODEL_NAME
    alias: str = "champion"
    current: RiskModel | None = None
    problem: str | None = "the failure-risk model has not been loaded yet"
    _reloading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reload(self) -> bool:
        """Blocking: loads a newly aliased version; True when one was swapped in."""
        with self._reloading:
            try:
                version = registry.resolve_alias(self.name, self.alias)
            except (registry.NoChampion, registry.RegistryUnreachable) as exc:
                self.problem = str(exc)
                return False
            if self.current is not None and version == self.current.version:
                return False
            try:
                state = failure_model.load_version(version)
            except registry.ModelLoadError as exc:
                self.problem = f"{self.name} version {version} was refused: {exc}"
                kept = f"v{self.current.version} stays" if self.current else "the hand-set rule"
                log.error("%s; %s", self.problem, kept)
                return False
            self.current, self.problem = RiskModel(state, version), None
            log.info("failure risk now from %s version %s (@%s)", self.name, version, self.alias)
            return True


async def poll(holder: RiskHolder, interval: float) -> None:
    """Checks the alias every `interval` seconds, off the event loop, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(holder.reload)
        except Exception:  # the poller must outlive any surprise
            log.exception("failure-risk reload failed; the current state stays")
