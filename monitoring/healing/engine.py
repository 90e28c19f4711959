"""The healing policy engine: decide what to do about a service, then do it as the mode says.

Modes: off (nothing), dry_run (recorded, never executed; the default), confirm (recorded as
pending until approved) and auto (executed). Executors are injected per action kind, so the
engine never talks to RelayCore, MLflow, a webhook or a shell itself. A failed execution is
recorded as failed and left there: the engine never retries, and the per-(service, kind)
rate limit keeps the next orchestration cycle from trying again straight away.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from monitoring.healing.actions import (
    COUNTED_STATES,
    Action,
    ActionKind,
    ActionRepository,
    ActionResult,
    ActionState,
    Executor,
    InMemoryActionRepository,
    Mode,
)
from monitoring.healing.policy import (
    CommandSpec,
    EndpointHealth,
    HealingInputs,
    HealingPolicy,
    ModelHealth,
    Proposal,
    decide,
)

__all__ = [
    "Action",
    "ActionError",
    "ActionKind",
    "ActionRepository",
    "ActionResult",
    "ActionState",
    "CommandSpec",
    "EndpointHealth",
    "Executor",
    "HealingEngine",
    "HealingInputs",
    "HealingPolicy",
    "InMemoryActionRepository",
    "Mode",
    "ModelHealth",
    "Proposal",
    "decide",
]

Clock = Callable[[], datetime]

UNDO_KIND = {
    ActionKind.DRAIN_ENDPOINT: ActionKind.RESTORE_ENDPOINT,
    ActionKind.RESTORE_ENDPOINT: ActionKind.DRAIN_ENDPOINT,
    ActionKind.ROLLBACK_CHAMPION: ActionKind.ROLLBACK_CHAMPION,
    ActionKind.SCALING_WEBHOOK: ActionKind.SCALING_WEBHOOK,
    ActionKind.RUN_COMMAND: ActionKind.RUN_COMMAND,
}


class ActionError(ValueError):
    """An action cannot do what was asked: unknown id, wrong state, or nothing to undo."""


def inverse_params(action: Action) -> dict[str, object]:
    p = dict(action.params)
    if action.kind is ActionKind.ROLLBACK_CHAMPION:
        p["from_version"], p["to_version"] = p["to_version"], p["from_version"]
    elif action.kind is ActionKind.SCALING_WEBHOOK:
        p["current"], p["desired"] = p["desired"], p["current"]
    elif action.kind is ActionKind.RUN_COMMAND:
        p["argv"], p["undo_argv"] = p["undo_argv"], []
    return p


class HealingEngine:
    """Turns proposals into recorded actions and runs them through the injected executors."""

    def __init__(
        self,
        repository: ActionRepository,
        executors: Mapping[ActionKind, Executor],
        policy: HealingPolicy | None = None,
        clock: Clock = datetime.now,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.repository, self.executors = repository, executors
        self.policy = policy or HealingPolicy()
        self.clock, self.new_id = clock, new_id

    def run(
        self, inputs: HealingInputs, mode: Mode | None = None, started_by: str = "orchestrator"
    ) -> list[Action]:
        """Decide for one service and act on each proposal as the mode says."""
        mode = mode or self.policy.mode
        if mode is Mode.OFF:
            return []
        proposals = decide(inputs, self.policy)
        return [self.submit(inputs.service, p, mode, started_by) for p in proposals]

    def submit(self, service: str, proposal: Proposal, mode: Mode, started_by: str) -> Action:
        now = self.clock()
        action = Action(
            id=self.new_id(),
            kind=proposal.kind,
            service=service,
            target=proposal.target,
            reason=proposal.reason,
            created_at=now,
            started_by=started_by,
            params=dict(proposal.params),
            undo=proposal.undo,
            updated_at=now,
            mode=mode,
        )
        if self.rate_limited(service, proposal.kind, now, action.replica):
            action.state = ActionState.RATE_LIMITED
            what = service if action.replica is None else f"{service} replica {action.replica}"
            action.result = f"a {proposal.kind} for {what} ran within {self.policy.rate_limit}"
        elif mode is Mode.DRY_RUN:
            action.state, action.result = ActionState.DRY_RUN, "dry run: not executed"
        elif mode is Mode.CONFIRM:
            action.state, action.result = ActionState.PENDING, "waiting for approval"
        self.repository.add(action)
        return (
            self.execute(action)
            if mode is Mode.AUTO and action.state is ActionState.PLANNED
            else action
        )

    def rate_limited(
        self, service: str, kind: ActionKind, now: datetime, replica: str | None = None
    ) -> bool:
        """Whether this kind ran for the service within the rate limit; a drain or restore
        (`replica` given) counts only the same replica's, so one replica's drain does not hold
        back its peer's."""
        recent = self.repository.list(
            service=service, kind=kind, since=now - self.policy.rate_limit
        )
        return any(a.state in COUNTED_STATES and a.replica == replica for a in recent)

    def execute(self, action: Action) -> Action:
        """Run once. Whatever happens is recorded; a failure is final, never retried here."""
        self.save(action, ActionState.RUNNING, None)
        executor = self.executors.get(action.kind)
        if executor is None:
            return self.save(
                action, ActionState.FAILED, f"no executor configured for {action.kind}"
            )
        try:
            outcome = executor(action)
        except Exception as exc:  # an executor's crash is an outcome to record, not to raise
            outcome = ActionResult(False, f"{type(exc).__name__}: {exc}")
        action.params.update(outcome.data)
        state = ActionState.SUCCEEDED if outcome.ok else ActionState.FAILED
        return self.save(action, state, outcome.detail)

    def approve(self, action_id: str, by: str) -> Action:
        """Execute a pending action; a person approving it overrides the rate limit."""
        action = self.require(action_id, ActionState.PENDING)
        action.approved_by = by
        return self.execute(action)

    def undo(self, action_id: str, by: str) -> Action:
        """Run the inverse of a succeeded action; the original becomes rolled_back on success."""
        original = self.require(action_id, ActionState.SUCCEEDED)
        if original.undo is None:
            raise ActionError(f"action {action_id} ({original.kind}) cannot be undone")
        now = self.clock()
        inverse = replace(
            original,
            id=self.new_id(),
            kind=UNDO_KIND[original.kind],
            reason=f"undo of {action_id}",
            created_at=now,
            updated_at=now,
            started_by=by,
            params=inverse_params(original),
            state=ActionState.PLANNED,
            result=None,
            undo=None,
            approved_by=by,
            undo_of=action_id,
            mode=None,
        )
        self.repository.add(inverse)
        done = self.execute(inverse)
        if done.state is ActionState.SUCCEEDED:
            self.save(original, ActionState.ROLLED_BACK, f"undone by {done.id}")
        return done

    def require(self, action_id: str, state: ActionState) -> Action:
        action = self.repository.get(action_id)
        if action is None:
            raise ActionError(f"unknown action {action_id}")
        if action.state is not state:
            raise ActionError(f"action {action_id} is {action.state}, not {state}")
        return action

    def save(self, action: Action, state: ActionState, result: str | None) -> Action:
        action.state, action.result, action.updated_at = state, result, self.clock()
        self.repository.update(action)
        return action
