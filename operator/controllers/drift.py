"""The drift check: Heat's "observe reality" between traversals, on a timer per Stack.

It runs only on a stack at rest (the engine looks at COMPLETE stacks only)
and unless `spec.repairDrift` is false. Each type's `repair_drift` puts back
what someone else changed; each repair (or failure to repair) is a Warning
Event on the Stack, and the `Drifted` condition names what the last check
found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.drift import Drift, repair_drift
from convergence.operator.kube.events import EventPoster
from convergence.operator.namespaces import Namespaces
from convergence.operator.spec import StackSpec
from convergence.operator.status import Status


def drift_event(drift: Drift) -> tuple[str, str, str]:
    """(Event type, reason, message) of one drift the check found."""
    reason = "DriftRepaired" if drift.repaired else "DriftRepairFailed"
    return "Warning", reason, describe(drift)


def describe(drift: Drift) -> str:
    """One drift as the Event and the Drifted condition name it."""
    return f"{drift.resource} ({drift.type}): {drift.message}"


class DriftController:
    """Repairs the drift of Stacks at rest and reports it."""

    def __init__(self, namespaces: Namespaces, status: Status, events: EventPoster) -> None:
        self.namespaces = namespaces
        self.status = status
        self.events = events

    def check(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """Check the Stack `name` for drift once (its body as the timer saw it)."""
        if not StackSpec.of(body).repair_drift:
            return
        drifts = repair_drift(self.namespaces.engine(namespace), name)
        for drift in drifts:
            self.events.post(namespace, body, *drift_event(drift))
        self.status.report_drift(namespace, body, [describe(d) for d in drifts])
