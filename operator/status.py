"""The one writer of what the operator reports in status: conditions, counts, phase Events.

What a Stack or StackResource *is* (phase, traversal, sync points) is the
store's; what it *reports* is written here, and only here:

- a StackResource's DependenciesReady (naming what its update node awaits)
  and Ready conditions, and its phase Event;
- a Stack's Ready/Progressing/Failed, ResourceDeleted and Drifted
  conditions, its StackResource counts (`status.resources`) and its phase
  Event, and the Failed condition of a spec that could not start (written
  through kopf's patch by the stack controller, built here).

Events follow phase transitions, never polls: each object keeps the phase it
last reported in `status.reportedPhase` (a Stack's with its traversal: an
update during an update is a new start), written together with its
conditions under a resourceVersion precondition, and the Event is posted only
after that write succeeded, so a transition is reported once, also across
restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from convergence.operator import conditions
from convergence.operator.engine import operations
from convergence.operator.engine.store import (
    COMPLETE,
    DELETE,
    FAILED,
    IN_PROGRESS,
    INIT,
    ResourceRecord,
    StackRecord,
)
from convergence.operator.kube.api import MERGE_PATCH, is_conflict, is_invalid, is_not_found
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.events import EventPoster
from convergence.operator.kube.names import (
    GROUP,
    RESOURCE_FINALIZER,
    STACK_RESOURCES,
    STACKS,
    VERSION,
)
from convergence.operator.kube.records import resource_from_body, split_phase, status_of
from convergence.operator.metrics import Metrics
from convergence.operator.namespaces import Namespaces


def transition_event(phase: str) -> tuple[str, str] | None:
    """(Event type, reason) reporting that an object reached `phase`; None for INIT phases."""
    action, _, status = phase.partition("_")
    if action in ("", INIT) or status not in (IN_PROGRESS, COMPLETE, FAILED):
        return None
    return ("Warning" if status == FAILED else "Normal"), conditions.camel(phase)


def deleted_while_in_use(body: Mapping[str, Any], stack_action: str) -> bool:
    """Whether someone deleted this StackResource while its stack still uses it.

    The engine takes the finalizer off before it deletes a record, so a record
    that is being deleted with the finalizer still on was deleted by someone
    else; unless the stack itself is being deleted (the garbage collector or a
    namespace deletion), or the record is already replaced and on its way out.
    """
    metadata = body.get("metadata") or {}
    return (
        bool(metadata.get("deletionTimestamp"))
        and RESOURCE_FINALIZER in (metadata.get("finalizers") or [])
        and stack_action != DELETE
        and not status_of(body).get("replacedBy")
    )


def resource_counts(bodies: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """status.resources of a Stack: its StackResources in all, in service, and by phase."""
    by_phase: dict[str, int] = {}
    ready = total = 0
    for body in bodies:
        total += 1
        phase = str(status_of(body).get("phase") or f"{INIT}_{COMPLETE}")
        by_phase[phase] = by_phase.get(phase, 0) + 1
        action, state = split_phase(phase)
        ready += state == COMPLETE and action != INIT
    return {"total": total, "ready": ready, "byPhase": by_phase}


def _merge_patch_to(old: Any, new: Any) -> Any:
    """The merge-patch value that turns `old` into `new`, not into their union.

    A JSON merge patch merges objects key by key, so a key that `new` lacks
    must be sent as null: else a phase no resource is in any more stays in
    `status.resources.byPhase` with its old count, and the report differs
    from the status (and is written again) at every look.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    gone = {k: None for k in old if k not in new}
    return {**gone, **{k: _merge_patch_to(old.get(k), v) for k, v in new.items()}}


@dataclass(frozen=True)
class StackReport:
    """What a Stack's status should report now, and whether that is a new phase."""

    conditions: list[conditions.Condition]
    counts: dict[str, Any]
    # The phase with its traversal (status.reportedPhase).
    phase: str
    new_phase: bool
    # The traversal ended before any report saw it in progress: its start is due too.
    passed_start: bool = False


def stack_report(
    body: Mapping[str, Any], stack: StackRecord, resources: Sequence[Mapping[str, Any]]
) -> StackReport:
    """The report of `stack` given its Stack's body and its StackResources' bodies."""
    wanted = conditions.stack_conditions(stack)
    deleted = [
        f"{r['spec']['resource']} (StackResource {r['metadata']['name']})"
        for r in resources
        if deleted_while_in_use(r, stack.action)
    ]
    status = status_of(body)
    present = {c.get("type") for c in status.get("conditions") or []}
    if deleted or "ResourceDeleted" in present:
        wanted.append(conditions.deleted_resources_condition(deleted, stack.name))
    phase = f"{stack.phase}/{stack.traversal}"
    reported = status.get("reportedPhase")
    return StackReport(
        wanted,
        resource_counts(resources),
        phase,
        reported != phase,
        reported != phase and passed_start(stack, reported),
    )


def passed_start(stack: StackRecord, reported: str | None) -> bool:
    """Whether `stack` ended a traversal whose start no report saw (`reported` was before it).

    A stack report reads the newest stack, so a short traversal can end before
    one sees it in progress. A completed traversal keeps its id from its start;
    a failed one gets a new id (operations.stop_traversal), so only its phase
    can say that the start was seen.
    """
    started = f"{stack.action}_{IN_PROGRESS}"
    if stack.action == INIT:
        return False
    if stack.status == COMPLETE:
        return reported != f"{started}/{stack.traversal}"
    if stack.status == FAILED:
        return (reported or "").partition("/")[0] != started
    return False


def not_started(
    status: Mapping[str, Any], generation: int | None, reason: str, message: str
) -> dict[str, Any]:
    """The status fields of a stack whose spec could not start (Ready/Progressing False,
    Failed True, with `reason`), for the stack controller's patch."""
    merged = conditions.merge(
        status.get("conditions") or [],
        [
            {"type": t, "status": v, "reason": reason, "message": message}
            for t, v in (("Ready", "False"), ("Progressing", "False"), ("Failed", "True"))
        ],
        generation,
    )
    return {"statusReason": message, "conditions": merged}


class Status:
    """Writes the reports of Stacks and StackResources, and posts their phase Events."""

    def __init__(self, namespaces: Namespaces, events: EventPoster, metrics: Metrics) -> None:
        self.namespaces = namespaces
        self.events = events
        self.metrics = metrics

    @property
    def _objects(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.namespaces.api)

    # -- StackResources --------------------------------------------------------------------------

    def report_resource(
        self,
        namespace: str,
        record_id: str,
        waiting: list[str] | None,
        phase_before: str | None = None,
    ) -> None:
        """Ready and DependenciesReady of a StackResource, and an Event for a new phase.

        The engine's record writes carry the conditions and the reported phase of
        the record they write (kube/store.py), so what is left to write here is
        what only the step knows: the dependencies a waiting node still awaits.
        A phase the step reached (`phase_before` is the record's phase before it)
        gets its Event here; so does one that was not reported with its write.
        """
        try:
            # The newest body this process knows: a newer one fails the patch below,
            # and its own watch event brings the conditions up to date.
            body = self.namespaces.cache(namespace).get(STACK_RESOURCES, record_id) or cast(
                Mapping[str, Any],
                self._objects.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, STACK_RESOURCES, record_id
                ),
            )
            record = resource_from_body(body)
            reported = self._patch(
                namespace,
                STACK_RESOURCES,
                body,
                conditions.resource_conditions(record, waiting),
                {},
                record.phase,
            )
        except kubernetes.client.ApiException as exc:
            # Gone, or written meanwhile: that write's watch event wakes the record again.
            if is_not_found(exc) or is_conflict(exc):
                return
            raise
        reached = reported or (phase_before is not None and record.phase != phase_before)
        event = transition_event(record.phase) if reached else None
        if event is not None:
            reason = f": {record.status_reason}" if record.status == FAILED else ""
            self.events.post(
                namespace,
                body,
                event[0],
                event[1],
                f"{record.name} ({record.type}): {record.phase.replace('_', ' ', 1)}{reason}",
            )

    def report_step_error(self, namespace: str, record_id: str, message: str | None) -> None:
        """`status.stepError` of a StackResource whose step keeps failing (None: it ran again),
        with a Warning Event `StepFailing` when the error is new."""
        body = self.namespaces.cache(namespace).get(STACK_RESOURCES, record_id)
        if body is None or status_of(body).get("stepError") == message:
            return
        try:
            self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                STACK_RESOURCES,
                record_id,
                {"status": {"stepError": message}},
                _content_type=MERGE_PATCH,
            )
        except kubernetes.client.ApiException as exc:
            if is_not_found(exc):
                return
            raise
        if message is not None:
            self.events.post(namespace, body, "Warning", "StepFailing", message)

    def resource_deleted(self, namespace: str, record: ResourceRecord) -> None:
        """The Event of a record whose delete completed (the object is going: no status)."""
        self.events.post(
            namespace,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StackResource",
                "metadata": {"name": record.id, "namespace": namespace},
            },
            "Normal",
            "DeleteComplete",
            f"{record.name} ({record.type}): DELETE completed",
        )

    # -- Stacks ----------------------------------------------------------------------------------

    def write_stack(
        self, namespace: str, body: Mapping[str, Any], stack: StackRecord, report: StackReport
    ) -> None:
        """Write a Stack's report; for a new phase, count it and post its Event.

        The patch carries the body's resourceVersion: when the Stack changed
        since, it fails, and the newer version's own event reports it.
        """
        try:
            reported = self._patch(
                namespace,
                STACKS,
                body,
                report.conditions,
                {"resources": report.counts},
                report.phase,
            )
        except kubernetes.client.ApiException as exc:
            if is_not_found(exc) or is_conflict(exc) or is_invalid(exc):
                return
            raise
        if not reported:
            return
        if report.passed_start:
            started = operations.start_reason(stack.action)
            self._report_phase(namespace, body, f"{stack.action}_{IN_PROGRESS}", started)
        self._report_phase(namespace, body, stack.phase, stack.status_reason)

    def _report_phase(
        self, namespace: str, body: Mapping[str, Any], phase: str, reason: str | None
    ) -> None:
        """Count a Stack's newly reported phase and post its Event."""
        self.metrics.observe_traversal(phase)
        event = transition_event(phase)
        if event is not None:
            self.events.post(namespace, body, event[0], event[1], reason or phase)

    def report_passed_failure(self, namespace: str, body: Mapping[str, Any]) -> None:
        """The Event of a failure the reports never saw: its rollback started right after.

        Reports read the newest Stack known, and the write that starts the
        rollback is known (its response) as soon as it is made, so a failure
        can be newer than one report and older than the next. Its watch event
        still carries it: when the Stack has moved past it, its Event is posted
        from there (the reports, which can no longer see it, will not post it).
        """
        status = status_of(body)
        phase, traversal = str(status.get("phase") or ""), status.get("traversal")
        newest = self.namespaces.cache(namespace).get(STACKS, str(body["metadata"]["name"]))
        if not phase.endswith(f"_{FAILED}") or newest is None:
            return
        if status_of(newest).get("traversal") == traversal:
            return  # still current: the report posts it
        event = transition_event(phase)
        if event is not None:
            self.metrics.observe_traversal(phase)
            reason = str(status.get("statusReason") or phase)
            self.events.post(namespace, body, event[0], event[1], reason)

    def report_drift(self, namespace: str, body: Mapping[str, Any], found: list[str]) -> None:
        """The `Drifted` condition of a Stack: what the last drift check found (and put back)."""
        status = status_of(body)
        previous = {c.get("type") for c in status.get("conditions") or []}
        if not found and "Drifted" not in previous:
            return  # never drifted: no condition to keep up to date
        merged = conditions.merge(
            status.get("conditions") or [],
            [conditions.drift_condition(found)],
            body.get("metadata", {}).get("generation"),
        )
        if merged == status.get("conditions"):
            return
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {"conditions": merged},
        }
        try:
            self._objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, STACKS, body["metadata"]["name"], patch
            )
        except kubernetes.client.ApiException as exc:
            # Changed meanwhile: the next check writes the condition.
            if not (is_not_found(exc) or is_conflict(exc)):
                raise

    def _patch(
        self,
        namespace: str,
        plural: str,
        body: Mapping[str, Any],
        wanted: list[conditions.Condition],
        extra: dict[str, Any],
        phase: str,
    ) -> bool:
        """Merge-patch status.conditions, `extra` and reportedPhase where they differ.

        This class is the only writer of conditions, so replacing the list whole
        is safe. The patch carries the body's resourceVersion, so it fails (409)
        when the object changed since: the newer version comes with its own
        watch event. Returns whether `phase` is newly reported (its Event is due).
        """
        status = status_of(body)
        generation = body.get("metadata", {}).get("generation")
        merged = conditions.merge(status.get("conditions") or [], wanted, generation)
        new_phase = status.get("reportedPhase") != phase
        if (
            not new_phase
            and merged == status.get("conditions")
            and all(status.get(k) == v for k, v in extra.items())
        ):
            return False
        replacing = {k: _merge_patch_to(status.get(k), v) for k, v in extra.items()}
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": {"conditions": merged, "reportedPhase": phase, **replacing},
        }
        written = self._objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            body["metadata"]["name"],
            patch,
            _content_type="application/merge-patch+json",
        )
        cache: ObjectCache = self.namespaces.cache(namespace)
        cache.observe(plural, cast(Mapping[str, Any], written))
        return new_phase
