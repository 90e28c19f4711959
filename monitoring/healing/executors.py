"""The real healing executors: MLflow alias moves, the scaling webhook and configured commands.

RelayCore's drain and restore belong to whoever holds RelayCore: the API acts in-process
(`serving.orchestrator.executors`), the flow over HTTP (`flows.relaycore_client`).

Each executor does its one thing once and reports an `ActionResult`; the healing engine records
it and never retries.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

import httpx

from monitoring.config import OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, Executor

WEBHOOK_TIMEOUT_S = 5.0
OUTPUT_TAIL = 500


def rollback_champion(action: Action) -> ActionResult:
    """Moves `@alias` from `from_version` to `to_version`, unless it moved meanwhile."""
    from monitoring.neuroweaver import registry  # MLflow loads only when a rollback runs

    p = action.params
    name, alias, to = str(p["model"]), str(p["alias"]), str(p["to_version"])
    try:
        current = registry.move_alias(name, alias, str(p["from_version"]), to)
    except ValueError as exc:
        return ActionResult(False, str(exc))
    except (registry.NotFound, registry.RegistryUnreachable) as exc:
        return ActionResult(False, f"MLflow refused: {exc}")
    return ActionResult(True, f"@{alias} of {name}: version {current} -> {to}")


def scaling_webhook(action: Action) -> ActionResult:
    """POSTs the recommendation; any 2xx is success."""
    p = action.params
    body = {
        "service": action.service,
        "current_replicas": p["current"],
        "desired_replicas": p["desired"],
        "rule": p.get("rule"),
        "reason": action.reason,
        "action_id": action.id,
    }
    try:
        response = httpx.post(str(p["url"]), json=body, timeout=WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return ActionResult(False, f"webhook unreachable: {type(exc).__name__}: {exc}")
    ok = response.is_success
    return ActionResult(ok, f"webhook answered {response.status_code}")


def command_runner(settings: OrchestratorSettings) -> Executor:
    """Runs an argv, without a shell, only if it is one of the configured commands."""
    allowed = {
        tuple(argv)
        for c in settings.healing_commands.values()
        for argv in (c.argv, c.undo_argv)
        if argv
    }

    def run(action: Action) -> ActionResult:
        argv = tuple(str(a) for a in action.params.get("argv") or ())
        if argv not in allowed:
            return ActionResult(False, f"refused: {shlex.join(argv)!r} is not a configured command")
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=settings.healing_command_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ActionResult(False, f"{shlex.join(argv)}: {type(exc).__name__}: {exc}")
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL:]
        return ActionResult(
            done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}: {output}".strip()
        )

    return run


def endpoint_data(found: Mapping[str, Any]) -> dict[str, Any]:
    """What a restore needs to register a drained endpoint again."""
    return {k: found.get(k) for k in ("url", "service", "max_concurrency")}


def base_executors(
    settings: OrchestratorSettings,
) -> dict[ActionKind, Executor]:
    """Executors usable from any process; RelayCore's drain and restore are added by its holder
    (the API in-process, `flows.relaycore_client` over HTTP)."""
    return {
        ActionKind.ROLLBACK_CHAMPION: rollback_champion,
        ActionKind.SCALING_WEBHOOK: scaling_webhook,
        ActionKind.RUN_COMMAND: command_runner(settings),
    }
