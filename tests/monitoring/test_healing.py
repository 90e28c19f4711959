"""Healing: each mode, the rate limit, undo, and failures recorded without retry."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from monitoring.healing.engine import (
    Action,
    ActionError,
    ActionKind,
    ActionResult,
    ActionState,
    CommandSpec,
    EndpointHealth,
    HealingEngine,
    HealingInputs,
    HealingPolicy,
    InMemoryActionRepository,
    Mode,
    ModelHealth,
    decide,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0)

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """An executor that records its calls and answers as told."""

    def __init__(self, ok: bool = True, data: dict[str, object] | None = None) -> None:
        self.calls: list[Action] = []
        self.ok, self.data = ok, data or {}

    def __call__(self, action: Action) -> ActionResult:
        self.calls.append(action)
        return ActionResult(self.ok, "done" if self.ok else "endpoint refused", dict(self.data))


def crashing(action: Action) -> ActionResult:
    raise ConnectionError("RelayCore unreachable")


BAD_ENDPOINT = HealingInputs(
    service="checkout",
    endpoints=(EndpointHealth("a", error_rate=0.5), EndpointHealth("b", error_rate=0.0)),
)


BAD_ENDPOINT_OF_THREE = HealingInputs(
    service="checkout",
    endpoints=(
        EndpointHealth("a", error_rate=0.5),
        EndpointHealth("b", error_rate=0.0),
        EndpointHealth("c", error_rate=0.0),
    ),
)


def engine(mode: Mode, executor=None, **policy):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    recorder = executor or Recorder()
    executors = {kind: recorder for kind in ActionKind}
    built = HealingEngine(
        InMemoryActionRepository(), executors, HealingPolicy(mode=mode, **policy), clock
    )
    return built, recorder, clock


def test_decide_failing_endpoint_proposes_drain_with_restore_undo() -> None:
    [proposal] = decide(BAD_ENDPOINT, HealingPolicy())
    assert proposal.kind is ActionKind.DRAIN_ENDPOINT
    assert proposal.target == "a"
    assert proposal.undo == "restore endpoint a in RelayCore"


def test_decide_last_serving_endpoint_is_never_drained() -> None:
    inputs = HealingInputs("checkout", endpoints=(EndpointHealth("a", error_rate=0.9),))
    assert decide(inputs, HealingPolicy()) == []


def test_decide_degraded_model_proposes_rollback_to_previous_version() -> None:
    model = ModelHealth("neuroweaver", "7", error=0.3, baseline_error=0.1, previous_version="6")
    [proposal] = decide(HealingInputs("api", model=model), HealingPolicy())
    assert proposal.kind is ActionKind.ROLLBACK_CHAMPION
    assert proposal.params["to_version"] == "6"
    assert proposal.undo == "re-point @champion of neuroweaver to version 7"


def test_decide_command_undo_only_when_undo_command_configured() -> None:
    policy = HealingPolicy(commands={"api": CommandSpec(("systemctl", "restart", "api"))})
    [proposal] = decide(HealingInputs("api", risk=0.95), policy)
    assert proposal.kind is ActionKind.RUN_COMMAND
    assert proposal.undo is None


def test_decide_command_runs_at_the_learned_risk_threshold_when_one_answered() -> None:
    policy = HealingPolicy(commands={"api": CommandSpec(("systemctl", "restart", "api"))})
    assert decide(HealingInputs("api", risk=0.7), policy) == []  # the hand-set rule's 0.8
    [proposal] = decide(HealingInputs("api", risk=0.7, risk_threshold=0.6), policy)
    assert "failure risk 0.70 >= 0.60" in proposal.reason
    assert decide(HealingInputs("api", risk=0.9, risk_threshold=0.95), policy) == []


def test_run_mode_off_does_nothing() -> None:
    healer, recorder, _ = engine(Mode.OFF)
    assert healer.run(BAD_ENDPOINT) == []
    assert healer.repository.list() == []
    assert recorder.calls == []


def test_run_mode_dry_run_records_without_executing() -> None:
    healer, recorder, _ = engine(Mode.DRY_RUN)
    [action] = healer.run(BAD_ENDPOINT)
    assert action.state is ActionState.DRY_RUN
    assert action.started_by == "orchestrator"
    assert recorder.calls == []
    assert healer.repository.get(action.id) is action


def test_run_default_mode_is_dry_run() -> None:
    assert HealingPolicy().mode is Mode.DRY_RUN


def test_run_mode_confirm_waits_then_approve_executes() -> None:
    healer, recorder, _ = engine(Mode.CONFIRM)
    [action] = healer.run(BAD_ENDPOINT)
    assert action.state is ActionState.PENDING
    assert recorder.calls == []
    done = healer.approve(action.id, by="api:alice")
    assert done.state is ActionState.SUCCEEDED
    assert done.approved_by == "api:alice"
    assert [a.id for a in recorder.calls] == [action.id]


def test_approve_non_pending_action_is_refused() -> None:
    healer, _, _ = engine(Mode.AUTO)
    [action] = healer.run(BAD_ENDPOINT)
    with pytest.raises(ActionError, match="not pending"):
        healer.approve(action.id, by="api:alice")


def test_run_mode_auto_executes_and_records_success() -> None:
    healer, recorder, _ = engine(Mode.AUTO)
    [action] = healer.run(BAD_ENDPOINT, started_by="api:bob")
    assert action.state is ActionState.SUCCEEDED
    assert action.started_by == "api:bob"
    assert action.result == "done"
    assert len(recorder.calls) == 1


def test_run_rate_limit_blocks_repeat_within_window() -> None:
    healer, recorder, clock = engine(Mode.AUTO)
    healer.run(BAD_ENDPOINT)
    clock.now += timedelta(minutes=5)
    [second] = healer.run(BAD_ENDPOINT)
    assert second.state is ActionState.RATE_LIMITED
    assert len(recorder.calls) == 1


def test_run_rate_limit_allows_after_window() -> None:
    healer, recorder, clock = engine(Mode.AUTO)
    healer.run(BAD_ENDPOINT)
    clock.now += timedelta(minutes=16)
    [second] = healer.run(BAD_ENDPOINT)
    assert second.state is ActionState.SUCCEEDED
    assert len(recorder.calls) == 2


def test_run_rate_limit_of_a_drain_holds_back_that_replica_only() -> None:
    healer, recorder, clock = engine(Mode.AUTO)
    healer.run(BAD_ENDPOINT_OF_THREE)
    clock.now += timedelta(minutes=5)
    peer_fails = HealingInputs(
        service="checkout",
        endpoints=(
            EndpointHealth("a", error_rate=0.5, drained=True),
            EndpointHealth("b", error_rate=0.5),
            EndpointHealth("c", error_rate=0.0),
        ),
    )
    [peer] = healer.run(peer_fails)
    assert (peer.replica, peer.state) == ("b", ActionState.SUCCEEDED)
    [again] = healer.run(BAD_ENDPOINT_OF_THREE)
    assert (again.replica, again.state) == ("a", ActionState.RATE_LIMITED)
    assert again.result == "a drain_endpoint for checkout replica a ran within 0:15:00"
    assert [a.replica for a in recorder.calls] == ["a", "b"]


def test_execute_failing_executor_recorded_failed_and_not_retried() -> None:
    failing = Recorder(ok=False)
    healer, _, clock = engine(Mode.AUTO, executor=failing)
    [action] = healer.run(BAD_ENDPOINT)
    assert action.state is ActionState.FAILED
    assert action.result == "endpoint refused"
    clock.now += timedelta(minutes=5)
    [again] = healer.run(BAD_ENDPOINT)
    assert again.state is ActionState.RATE_LIMITED
    assert len(failing.calls) == 1


def test_execute_crashing_executor_recorded_failed() -> None:
    healer, _, _ = engine(Mode.AUTO, executor=crashing)
    [action] = healer.run(BAD_ENDPOINT)
    assert action.state is ActionState.FAILED
    assert "RelayCore unreachable" in (action.result or "")


def test_undo_drain_restores_endpoint_and_marks_original_rolled_back() -> None:
    healer, recorder, _ = engine(Mode.AUTO)
    [drain] = healer.run(BAD_ENDPOINT)
    inverse = healer.undo(drain.id, by="api:carol")
    assert inverse.kind is ActionKind.RESTORE_ENDPOINT
    assert inverse.state is ActionState.SUCCEEDED
    assert inverse.undo_of == drain.id
    assert inverse.started_by == "api:carol"
    assert healer.repository.get(drain.id).state is ActionState.ROLLED_BACK  # type: ignore[union-attr]
    assert len(recorder.calls) == 2


def test_undo_rollback_repoints_alias_to_replaced_version() -> None:
    healer, recorder, _ = engine(Mode.AUTO)
    model = ModelHealth("nw", "7", error=0.3, baseline_error=0.1, previous_version="6")
    [rollback] = healer.run(HealingInputs("api", model=model))
    inverse = healer.undo(rollback.id, by="api:dave")
    assert inverse.params["to_version"] == "7"
    assert recorder.calls[-1].params["from_version"] == "6"


def test_undo_command_without_undo_command_is_refused() -> None:
    policy = {"commands": {"api": CommandSpec(("restart",))}}
    healer, _, _ = engine(Mode.AUTO, **policy)
    [action] = healer.run(HealingInputs("api", risk=0.99))
    with pytest.raises(ActionError, match="cannot be undone"):
        healer.undo(action.id, by="api:erin")


def test_undo_unknown_action_is_refused() -> None:
    healer, _, _ = engine(Mode.AUTO)
    with pytest.raises(ActionError, match="unknown action"):
        healer.undo("nope", by="api:frank")
