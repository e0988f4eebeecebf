"""Stack and StackResource conditions say what a user needs: in service, progressing, failed."""

from __future__ import annotations

from convergence.operator.conditions import merge, resource_conditions, stack_conditions
from convergence.operator.engine.store import ResourceRecord, StackRecord


def by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conditions}


def test_a_stack_in_service_while_cleanup_runs_is_ready_and_progressing() -> None:
    stack = StackRecord(
        "s", "u", "t", template="r1", action="UPDATE", status="IN_PROGRESS", ready=True
    )
    conditions = by_type(stack_conditions(stack))
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "InService"
    assert "cleanup" in str(conditions["Ready"]["message"])
    assert conditions["Progressing"]["status"] == "True"
    assert conditions["Failed"]["status"] == "False"


def test_a_failed_stack_is_not_ready_and_says_why() -> None:
    stack = StackRecord(
        "s",
        "u",
        "t",
        template="r1",
        action="CREATE",
        status="FAILED",
        status_reason="Resource CREATE failed: boom",
    )
    conditions = by_type(stack_conditions(stack))
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Failed"]["status"] == "True"
    assert conditions["Failed"]["reason"] == "CreateFailed"
    assert "boom" in str(conditions["Failed"]["message"])


def test_a_rolled_back_create_is_not_in_service() -> None:
    stack = StackRecord(
        "s", "u", "t", template=None, action="ROLLBACK", status="COMPLETE", ready=True
    )
    assert by_type(stack_conditions(stack))["Ready"]["status"] == "False"


def test_dependencies_ready_names_what_is_awaited() -> None:
    record = ResourceRecord("r", "s", "web", "OS::Heat::TestResource")
    conditions = by_type(resource_conditions(record, ["db", "password"]))
    assert conditions["DependenciesReady"]["status"] == "False"
    assert conditions["DependenciesReady"]["message"] == "Waiting for db, password"
    assert conditions["Ready"]["status"] == "False", "an INIT record is not ready"


def test_transition_time_is_kept_while_the_status_does_not_change() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    same = merge(old, [{"type": "Ready", "status": "True", "reason": "X", "message": ""}], 3)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 3
    flipped = merge(old, [{"type": "Ready", "status": "False", "reason": "X", "message": ""}], 3)
    assert flipped[0]["lastTransitionTime"] != "2026-01-01T00:00:00Z"
