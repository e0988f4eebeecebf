"""metav1.Condition entries for Stacks and StackResources, derived from the engine's records.

Pure functions from a record to the conditions a user reads with `kubectl
describe` or waits on with `kubectl wait --for=condition=Ready`. A condition
keeps its lastTransitionTime while its status does not change, so the
previous list is passed in.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from convergence.operator.engine.store import (
    COMPLETE,
    FAILED,
    IN_PROGRESS,
    ResourceRecord,
    StackRecord,
)

Condition = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def camel(words: str) -> str:
    """CREATE_COMPLETE -> CreateComplete: a condition reason from a Heat state."""
    return "".join(part.capitalize() for part in words.lower().split("_"))


def merge(
    previous: Iterable[Mapping[str, Any]], wanted: Iterable[Condition], generation: int | None
) -> list[Condition]:
    """The wanted conditions, keeping lastTransitionTime where the status is unchanged.

    Conditions of other types in `previous` are kept as they are (each type has
    one writer: e.g. the drift check's `Drifted` outlives the stack reports).
    """
    previous = list(previous)
    before = {c.get("type"): c for c in previous}
    updated: dict[Any, Condition | None] = {}
    for condition in wanted:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"]:
            condition["lastTransitionTime"] = old.get("lastTransitionTime") or _now()
        else:
            condition["lastTransitionTime"] = _now()
        if generation is not None:
            condition["observedGeneration"] = generation
        updated[condition["type"]] = condition
    # In the order they had, new types last, so an unchanged list compares equal.
    merged = [updated.pop(c.get("type"), None) or dict(c) for c in previous]
    return merged + [c for c in updated.values() if c is not None]


def deleted_resources_condition(deleted: Iterable[str], stack: str) -> Condition:
    """`ResourceDeleted`: True naming StackResources deleted by hand while the stack uses them."""
    found = sorted(deleted)
    if not found:
        return _condition(
            "ResourceDeleted", False, "AllPresent", "No StackResource in use is deleted"
        )
    return _condition(
        "ResourceDeleted",
        True,
        "DeletedWhileInUse",
        f"Deleted while the stack uses them: {', '.join(found)}. Their physical resources are "
        "kept until the stack's next update replaces them (to update now: kubectl annotate "
        f'--overwrite stack {stack} convergence.dev/retry="$(date +%s)")',
    )


def drift_condition(drifted: Iterable[str]) -> Condition:
    """`Drifted`: True naming what the last drift check found changed (and put back)."""
    found = sorted(drifted)
    if found:
        return _condition("Drifted", True, "DriftRepaired", "; ".join(found))
    return _condition("Drifted", False, "InSync", "Every resource matches its template")


def _condition(type_: str, true: bool, reason: str, message: str) -> Condition:
    return {
        "type": type_,
        "status": "True" if true else "False",
        "reason": reason,
        "message": message[:32768],
    }


def stack_conditions(stack: StackRecord) -> list[Condition]:
    """Ready (in service), Progressing (a traversal or its cleanup runs), Failed.

    In service means every update node of the traversal is done (the engine's
    `ready`); the phase reaches *_COMPLETE only when cleanup is done too, so a
    stack can be Ready and Progressing at once, and the message says so.
    """
    phase = stack.phase
    reason = camel(phase)
    message = stack.status_reason or phase
    in_progress = stack.status == IN_PROGRESS
    # A rolled-back create (or a delete) converged to the empty template: nothing serves.
    in_service = stack.ready and stack.status != FAILED and stack.template is not None
    if in_service and in_progress:
        ready = _condition(
            "Ready", True, "InService", "All resources are in service; cleanup is running"
        )
    elif in_service:
        ready = _condition("Ready", True, reason, message)
    else:
        ready = _condition("Ready", False, reason, f"Not in service: {message}")
    return [
        ready,
        _condition("Progressing", in_progress, reason, message),
        _condition("Failed", stack.status == FAILED, reason, message),
    ]


def resource_conditions(record: ResourceRecord, waiting_for: list[str] | None) -> list[Condition]:
    """DependenciesReady (naming what is still awaited) and Ready."""
    if waiting_for:
        dependencies = _condition(
            "DependenciesReady",
            False,
            "WaitingForDependencies",
            "Waiting for " + ", ".join(waiting_for),
        )
    else:
        dependencies = _condition(
            "DependenciesReady", True, "DependenciesReady", "All dependencies are ready"
        )
    ready = record.status == COMPLETE and record.action not in ("INIT", "DELETE")
    return [
        dependencies,
        _condition("Ready", ready, camel(record.phase), record.status_reason or record.phase),
    ]
