"""What the operator reports in status, decided without the API (operator/status.py)."""

from __future__ import annotations

from typing import Any

import pytest

from convergence.operator.engine.store import StackRecord
from convergence.operator.kube.names import RESOURCE_FINALIZER
from convergence.operator.status import (
    deleted_while_in_use,
    not_started,
    resource_counts,
    stack_report,
    transition_event,
)


@pytest.mark.parametrize(
    ("phase", "event"),
    [
        ("CREATE_IN_PROGRESS", ("Normal", "CreateInProgress")),
        ("UPDATE_COMPLETE", ("Normal", "UpdateComplete")),
        ("DELETE_FAILED", ("Warning", "DeleteFailed")),
        ("INIT_COMPLETE", None),
        ("", None),
    ],
)
def test_a_phase_transition_is_an_event_named_after_the_phase(
    phase: str, event: tuple[str, str] | None
) -> None:
    assert transition_event(phase) == event


def resource(
    name: str, phase: str | None, *, deleting: bool = False, replaced: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"r-{name}", "finalizers": [RESOURCE_FINALIZER]}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if replaced:
        status["replacedBy"] = "newer"
    return {"metadata": metadata, "spec": {"resource": name, "stack": "s"}, "status": status}


def test_counts_name_every_phase_and_what_is_in_service() -> None:
    bodies = [
        resource("a", "CREATE_COMPLETE"),
        resource("b", "UPDATE_COMPLETE"),
        resource("c", "CREATE_IN_PROGRESS"),
        resource("d", None),
    ]
    assert resource_counts(bodies) == {
        "total": 4,
        "ready": 2,
        "byPhase": {
            "CREATE_COMPLETE": 1,
            "UPDATE_COMPLETE": 1,
            "CREATE_IN_PROGRESS": 1,
            "INIT_COMPLETE": 1,
        },
    }


def test_a_record_deleted_by_someone_else_is_told_from_one_on_its_way_out() -> None:
    assert deleted_while_in_use(resource("a", "CREATE_COMPLETE", deleting=True), "UPDATE")
    assert not deleted_while_in_use(resource("a", "CREATE_COMPLETE"), "UPDATE")
    assert not deleted_while_in_use(resource("a", "CREATE_COMPLETE", deleting=True), "DELETE")
    replaced = resource("a", "CREATE_COMPLETE", deleting=True, replaced=True)
    assert not deleted_while_in_use(replaced, "UPDATE")


def stack_body(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s", "generation": 3}, "status": status}


def test_a_stack_report_is_new_once_per_phase_and_traversal() -> None:
    stack = StackRecord("s", "uid", "t1", action="CREATE", status="COMPLETE", ready=True)
    first = stack_report(stack_body(), stack, [resource("a", "CREATE_COMPLETE")])
    assert first.new_phase
    assert first.phase == "CREATE_COMPLETE/t1"
    assert [c["type"] for c in first.conditions] == ["Ready", "Progressing", "Failed"]
    assert first.counts["ready"] == 1
    again = stack_report(stack_body(reportedPhase=first.phase), stack, [])
    assert not again.new_phase


@pytest.mark.parametrize(
    ("status", "traversal", "reported", "passed"),
    [
        # A short traversal ended before any report saw it in progress.
        ("COMPLETE", "t1", None, True),
        ("COMPLETE", "t1", "INIT_COMPLETE/t0", True),
        ("COMPLETE", "t1", "CREATE_IN_PROGRESS/t1", False),
        # The start that was seen was another traversal's (this one replaced it).
        ("COMPLETE", "t2", "CREATE_IN_PROGRESS/t1", True),
        # A failure takes a new traversal id: its start is told by the phase alone.
        ("FAILED", "t2", "CREATE_IN_PROGRESS/t1", False),
        ("FAILED", "t2", "INIT_COMPLETE/t0", True),
        ("IN_PROGRESS", "t1", "INIT_COMPLETE/t0", False),
    ],
)
def test_a_report_that_ends_a_traversal_no_report_saw_start_reports_its_start_too(
    status: str, traversal: str, reported: str | None, passed: bool
) -> None:
    stack = StackRecord("s", "uid", traversal, action="CREATE", status=status)
    report = stack_report(stack_body(reportedPhase=reported), stack, [])
    assert report.new_phase
    assert report.passed_start is passed


def test_resource_deleted_is_reported_while_a_record_is_deleted_and_until_cleared() -> None:
    stack = StackRecord("s", "uid", "t1", action="UPDATE", status="COMPLETE", ready=True)
    deleted = [resource("a", "CREATE_COMPLETE", deleting=True)]
    report = stack_report(stack_body(), stack, deleted)
    (condition,) = [c for c in report.conditions if c["type"] == "ResourceDeleted"]
    assert condition["status"] == "True"
    assert "a (StackResource r-a)" in condition["message"]
    cleared = stack_report(stack_body(conditions=[condition]), stack, [])
    (condition,) = [c for c in cleared.conditions if c["type"] == "ResourceDeleted"]
    assert condition["status"] == "False"
    never = stack_report(stack_body(), stack, [])
    assert "ResourceDeleted" not in [c["type"] for c in never.conditions]


def test_a_stack_that_could_not_start_is_failed_and_not_ready() -> None:
    fields = not_started({}, 3, "ParametersNotFound", "parametersFrom: not found: Secret x")
    assert fields["statusReason"] == "parametersFrom: not found: Secret x"
    by_type = {c["type"]: c for c in fields["conditions"]}
    assert {t: c["status"] for t, c in by_type.items()} == {
        "Ready": "False",
        "Progressing": "False",
        "Failed": "True",
    }
    assert {c["reason"] for c in by_type.values()} == {"ParametersNotFound"}
    assert {c["observedGeneration"] for c in by_type.values()} == {3}
