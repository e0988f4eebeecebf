"""The StackResource controller: run a record's nodes from the work queue, and report the step.

Any change of a StackResource (a push into its sync points, mostly) wakes its
record in the work queue; the cache learns the new body first, so the step it
wakes reads at least this. A step runs the node messages the record needs now
(`converger.messages_for_record`), one record at a time per key; an action in
flight is polled by adding the key again after a delay, never awaited, so a
newer traversal is seen between polls. After a restart the initial listing
wakes every record again. What the steps did is counted (`StepMetrics`) and
reported on the StackResource (`status.py`).

A StackResource deleted by someone else while its stack still uses it keeps
its finalizer (and its physical resource) until the stack's next update
replaces it; the deletion is reported on it and on its Stack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from convergence.operator import logs, metrics
from convergence.operator.engine.converger import (
    StepReport,
    check_resource,
    messages_for_record,
)
from convergence.operator.engine.outcome import ActionResult
from convergence.operator.engine.store import DELETE, ResourceRecord, StackRecord
from convergence.operator.engine.wiring import Engine
from convergence.operator.kube.events import EventPoster
from convergence.operator.kube.names import STACK_RESOURCES, STACKS
from convergence.operator.kube.records import status_of
from convergence.operator.namespaces import Namespaces, RecordKey
from convergence.operator.status import Status, deleted_while_in_use

logger = logging.getLogger("convergence.operator")
# Seconds an update node waits for its dependencies before the wait is reported.
WAITING_REPORT_AFTER = 2.0


@dataclass(frozen=True)
class Summary:
    """What the steps of one wake-up of a record amount to, for the queue and the report."""

    # When to run the record again (None: not needed).
    poll_after: float | None
    # The predecessors its update node awaits (None: it awaits none).
    waiting_for: list[str] | None
    # Its delete completed (the record is gone).
    deleted: bool


def summarize(reports: Iterable[StepReport]) -> Summary:
    """The Summary of the steps a wake-up ran."""
    polls: list[float] = []
    waiting: list[str] | None = None
    deleted = False
    for report in reports:
        outcome = report.outcome
        if report.poll_after is not None:
            polls.append(report.poll_after)
        if report.message.node.is_update and outcome.waiting:
            waiting = [str(node) for node in outcome.waiting_for]
        action = outcome.action
        deleted = deleted or (
            action is not None and action.name == DELETE and action.result is ActionResult.COMPLETE
        )
    return Summary(min(polls) if polls else None, waiting, deleted)


class StepMetrics:
    """Metrics of the steps: resource actions started and ended, sync point waits.

    The timing is in-process (lost on restart, which only skips an
    observation): when each action in flight started, and since when each
    node waits on its sync point.
    """

    def __init__(self, recorder: metrics.Metrics) -> None:
        self.recorder = recorder
        self.action_started: dict[str, tuple[str, float]] = {}
        self.waiting_since: dict[tuple[str, bool], float] = {}
        recorder.nodes_waiting.set_function(lambda: len(self.waiting_since))

    def count(self, report: StepReport, record: ResourceRecord | None, now: float) -> None:
        """Count one step of `record` (None: gone) that ended at `now` (monotonic seconds)."""
        node = report.message.node
        node_key = (node.record_id, node.is_update)
        if report.outcome.waiting:
            self.waiting_since.setdefault(node_key, now)
        else:
            since = self.waiting_since.pop(node_key, None)
            if since is not None and not report.outcome.kind.dropped:
                self.recorder.dependency_wait_seconds.observe(now - since)
        action = metrics.resource_action(report.outcome)
        if action is None or record is None:
            return
        name, result = action
        self.recorder.resource_actions_total.labels(record.type, name, result).inc()
        if result == metrics.STARTED:
            self.action_started[node.record_id] = (name, now)
            return
        started = self.action_started.pop(node.record_id, None)
        if started is not None and started[0] == name:
            self.recorder.resource_action_duration_seconds.labels(record.type, name).observe(
                now - started[1]
            )


class StackResourceController:
    """Runs the nodes of StackResources and follows their watch events."""

    def __init__(
        self,
        namespaces: Namespaces,
        status: Status,
        events: EventPoster,
        recorder: metrics.Metrics,
    ) -> None:
        self.namespaces = namespaces
        self.status = status
        self.events = events
        self.step_metrics = StepMetrics(recorder)

    # -- steps, from the work queue ---------------------------------------------------------------

    def step(self, key: RecordKey) -> float | None:
        """Run the nodes of one record once; return when to poll again (None: not needed)."""
        namespace, stack_name, record_id = key
        engine = self.namespaces.engine(namespace)
        stack = engine.store.get_stack(stack_name)
        if stack is None or not stack.traversal:
            return None
        record = engine.store.get_resource(record_id)
        with logs.context(
            resource=record.name if record is not None else record_id, traversal=stack.traversal
        ):
            return self._step(engine, namespace, stack, record_id, record)

    def _step(
        self,
        engine: Engine,
        namespace: str,
        stack: StackRecord,
        record_id: str,
        record: ResourceRecord | None,
    ) -> float | None:
        reports = []
        for message in messages_for_record(stack, record_id, record):
            report = check_resource(engine, message)
            logger.debug("%s: %s", message.node, report.outcome)
            self.step_metrics.count(report, record, time.monotonic())
            reports.append(report)
        summary = summarize(reports)
        if summary.deleted:
            # The record is gone: its Event is all there is to report (a patch of
            # its status, from a body still cached, would only be refused).
            if record is not None:
                self.status.resource_deleted(namespace, record)
            return summary.poll_after
        phase_before = record.phase if record is not None else None
        waiting, recheck = self._waiting_to_report(record_id, summary.waiting_for)
        acted = any(report.outcome.action is not None for report in reports)
        if recheck is None or acted:
            self.status.report_resource(namespace, record_id, waiting, phase_before)
        polls = [t for t in (summary.poll_after, recheck) if t is not None]
        return min(polls) if polls else None

    def _waiting_to_report(
        self, record_id: str, waiting: list[str] | None
    ) -> tuple[list[str] | None, float | None]:
        """What the record's update node awaits, once it has waited `WAITING_REPORT_AFTER`.

        Each push wakes the record, and in a fast traversal most nodes wait for
        a moment only: reporting every new list would cost a write per push.
        A node still waiting is reported then (its wake-up is scheduled); a
        moment's wait is never written, and the record is not reported at all
        meanwhile unless an action of it moved. Returns (the list to report, or None;
        seconds after which to look again, or None).
        """
        if not waiting:
            return None, None
        since = self.step_metrics.waiting_since.get((record_id, True))
        waited = 0.0 if since is None else time.monotonic() - since
        if waited >= WAITING_REPORT_AFTER:
            return waiting, None
        return None, WAITING_REPORT_AFTER - waited

    # -- watch events -----------------------------------------------------------------------------

    def observe(self, namespace: str, body: Mapping[str, Any], deleted: bool) -> None:
        """A StackResource's watch event: remember it, and wake its record.

        A changed phase also schedules a report of the stack's counts (batched).
        """
        cache = self.namespaces.cache(namespace)
        name = body["metadata"]["name"]
        known = cache.get(STACK_RESOURCES, name)
        if deleted:
            cache.forget(STACK_RESOURCES, body)
        else:
            cache.observe(STACK_RESOURCES, body)
        stack = body.get("spec", {}).get("stack")
        if not stack:
            return
        self.namespaces.queue.add((namespace, stack, name))
        phase = status_of(body).get("phase")
        newly_deleted = bool(body["metadata"].get("deletionTimestamp")) and not (
            known is not None and known["metadata"].get("deletionTimestamp")
        )
        if deleted or known is None or status_of(known).get("phase") != phase:
            self.namespaces.schedule_report(namespace, stack)
        if newly_deleted:
            self.report_deleted_by_hand(namespace, stack, body)

    def report_deleted_by_hand(
        self, namespace: str, stack_name: str, body: Mapping[str, Any]
    ) -> None:
        """Warn on the StackResource and its Stack when a StackResource in use is deleted."""
        stack = self.namespaces.engine(namespace).store.get_stack(stack_name)
        if stack is None or not deleted_while_in_use(body, stack.action):
            return
        stack_body = self.namespaces.cache(namespace).get(STACKS, stack_name)
        if stack_body is not None and stack_body["metadata"].get("deletionTimestamp"):
            return  # the Stack is going too (its namespace is being deleted, say)
        message = (
            f"StackResource {body['metadata']['name']} ({body['spec']['resource']}) was deleted "
            "while the stack uses it; its physical resource is kept until the stack's next "
            "update replaces it"
        )
        self.events.post(namespace, body, "Warning", "DeletedWhileInUse", message)
        if stack_body is not None:
            self.events.post(namespace, stack_body, "Warning", "DeletedWhileInUse", message)
        self.namespaces.schedule_report(namespace, stack_name)
