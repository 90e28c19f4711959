"""`relaycore-policy@champion` followed by every API process: loaded at start, polled, and on a
new version written to RelayCore's shared desired state, from which every process's router
takes it (serving/relaycore/control.py). A version that cannot be read is refused and the knobs
in force stay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from flows.relaycore_policy import MODEL_NAME, load_version
from routing import AdaptiveParams
from serving.orchestrator.holder import AliasHolder

log = logging.getLogger(__name__)
PolicyHolder = AliasHolder[AdaptiveParams]
Apply = Callable[[AdaptiveParams], Awaitable[None]]


def policy_holder() -> PolicyHolder:
    return AliasHolder(MODEL_NAME, load_version, "the knobs in the store (or the defaults) route")


async def follow(holder: PolicyHolder, apply: Apply, interval: float) -> None:
    """Checks the alias now and then every `interval` seconds; applies each new version."""
    while True:
        try:
            if await asyncio.to_thread(holder.reload) and holder.current is not None:
                await apply(holder.current)
        except Exception:  # the follower must outlive any surprise
            log.exception("%s: following the alias failed; the knobs in force stay", MODEL_NAME)
        await asyncio.sleep(interval)


def describe(holder: PolicyHolder) -> dict[str, Any]:
    """Which knobs route: the registered version, or why none is."""
    served = holder.current is not None
    return {
        "model": holder.name,
        "alias": holder.alias,
        "version": holder.version if served else None,
        "source": f"{holder.name} v{holder.version} (@{holder.alias})"
        if served
        else holder.fallback,
        "problem": holder.problem,
    }
