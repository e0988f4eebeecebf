"""How a child Stack's body reads as the nested stack state a type follows (kube/nested.py)."""

from __future__ import annotations

from typing import Any

from convergence.operator.kube.nested import child_state


def body(generation: int, observed: int | None, phase: str | None, **status: Any) -> Any:
    full = dict(status)
    if observed is not None:
        full["observedGeneration"] = observed
    if phase is not None:
        full["phase"] = phase
    return {"metadata": {"name": "p-db-abcdefgh", "generation": generation}, "status": full}


def failed(reason: str, generation: int) -> dict[str, Any]:
    return {
        "type": "Failed",
        "status": "True",
        "reason": reason,
        "message": f"{reason} message",
        "observedGeneration": generation,
    }


def test_a_new_child_has_taken_up_nothing_yet() -> None:
    state = child_state(body(1, None, None))
    assert (state.generation, state.phase) == (0, "INIT_COMPLETE")


def test_the_phase_is_about_the_observed_generation() -> None:
    state = child_state(body(3, 2, "UPDATE_COMPLETE", outputs={"said": "x"}))
    assert state.generation == 2, "the phase of generation 2 must not count for 3"
    done = child_state(body(3, 3, "UPDATE_COMPLETE", outputs={"said": "y"}))
    assert (done.generation, done.status, dict(done.outputs)) == (3, "COMPLETE", {"said": "y"})


def test_a_spec_refused_at_start_fails_though_the_phase_is_the_one_before() -> None:
    refused = body(2, 2, "CREATE_COMPLETE", conditions=[failed("InvalidTemplate", 2)])
    state = child_state(refused)
    assert (state.status, state.reason) == ("FAILED", "InvalidTemplate message")


def test_a_failure_of_an_earlier_generation_or_a_traversal_does_not_count_twice() -> None:
    earlier = body(3, 3, "UPDATE_COMPLETE", conditions=[failed("InvalidTemplate", 2)])
    assert child_state(earlier).status == "COMPLETE"
    report = body(3, 3, "UPDATE_COMPLETE", conditions=[failed("UpdateFailed", 3)])
    assert child_state(report).status == "COMPLETE"
    running = body(3, 3, "UPDATE_IN_PROGRESS", conditions=[failed("InvalidTemplate", 3)])
    assert child_state(running).status == "IN_PROGRESS"


def test_a_failed_phase_carries_the_childs_reason() -> None:
    state = child_state(body(1, 1, "CREATE_FAILED", statusReason="Resource CREATE failed: x"))
    assert (state.phase, state.reason) == ("CREATE_FAILED", "Resource CREATE failed: x")


def test_the_retry_a_child_has_taken_up_is_its_handled_retry() -> None:
    assert child_state(body(1, 1, "CREATE_FAILED")).retried == ""
    state = child_state(body(1, 1, "UPDATE_IN_PROGRESS", handledRetry="token-1"))
    assert state.retried == "token-1"
