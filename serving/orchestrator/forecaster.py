"""The served capacity forecaster: `capacity-forecaster@champion`'s fitted state, kept current.

The API and the orchestration flow read the per-series choices from here instead of running the
backtest on every request. A missing or unreadable version leaves the last good state in place;
with no state at all, a forecast chooses its method on the spot, as before training.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from monitoring.assess import capacity_model
from monitoring.assess.capacity_model import MODEL_NAME, FittedForecaster
from monitoring.neuroweaver import registry

log = logging.getLogger(__name__)


@dataclass
class ForecasterHolder:
    name: str = MODEL_NAME
    alias: str = "champion"
    current: FittedForecaster | None = None
    version: str | None = None
    problem: str | None = "the capacity forecaster has not been loaded yet"
    _reloading: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
            return self._load(version)

    def _load(self, version: str) -> bool:
        try:
            state = capacity_model.load_version(version)
        except registry.ModelLoadError as exc:
            self.problem = f"{self.name} version {version} was refused: {exc}"
            log.error("%s; %s", self.problem, self._kept())
            return False
        self.current, self.version, self.problem = state, version, None
        log.info("capacity forecasts now use %s version %s (@%s)", self.name, version, self.alias)
        return True

    def _kept(self) -> str:
        return f"version {self.version} stays" if self.version else "forecasts choose on the spot"


async def poll(holder: ForecasterHolder, interval: float) -> None:
    """Checks the alias every `interval` seconds, off the event loop, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(holder.reload)
        except Exception:  # the poller must outlive any surprise
            log.exception("capacity forecaster reload failed; the current state stays")
