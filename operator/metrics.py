"""Prometheus metrics of the operator: controller-runtime's reconcile metrics and the engine's.

kopf exports no metrics, so the operator does, under names a controller-runtime
user already has dashboards for (`convergence_reconcile_total{controller,result}`
mirrors `controller_runtime_reconcile_total`), plus the convergence domain:
traversals started/completed/failed by action, resource actions by
type/action/result with their durations, and the nodes waiting on sync points.

Labels are bounded: controller, action, result and resource type, never an
object's name. Every metric lives in one `CollectorRegistry` owned by a
`Metrics` object that is passed around, so tests read a fresh registry rather
than the process-global one. The functions below the class are pure: they turn
what the engine reports (a step's outcome, a phase) into metric labels.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from convergence.operator.engine.outcome import ActionResult, StepOutcome

# The controllers: kopf's Stack handlers, the work queue running StackResource nodes,
# and kopf's StackPreview handler.
STACK = "stack"
STACK_RESOURCE = "stackresource"
STACK_PREVIEW = "stackpreview"

# Reconcile results, as in controller-runtime.
SUCCESS = "success"
ERROR = "error"
REQUEUE = "requeue"
REQUEUE_AFTER = "requeue_after"

# Results of a resource action.
STARTED = "started"
FAILURE = "failure"

_ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """Every metric of the operator, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter(
            "convergence_reconcile_total",
            "Reconciliations per controller and result.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            "convergence_reconcile_errors_total",
            "Reconciliations that ended in an error.",
            ["controller"],
            registry=r,
        )
        self.reconcile_time_seconds = Histogram(
            "convergence_reconcile_time_seconds",
            "Time of one reconciliation.",
            ["controller"],
            registry=r,
        )
        self.active_workers = Gauge(
            "convergence_active_workers",
            "Reconciliations running now.",
            ["controller"],
            registry=r,
        )
        self.workqueue_depth = Gauge(
            "convergence_workqueue_depth",
            "Keys waiting in the work queue (delayed polls not counted).",
            ["name"],
            registry=r,
        )
        self.traversals_started_total = Counter(
            "convergence_traversals_started_total",
            "Stack traversals started, by action.",
            ["action"],
            registry=r,
        )
        self.traversals_completed_total = Counter(
            "convergence_traversals_completed_total",
            "Stack traversals that reached *_COMPLETE, by action.",
            ["action"],
            registry=r,
        )
        self.traversals_failed_total = Counter(
            "convergence_traversals_failed_total",
            "Stack traversals that reached *_FAILED, by action.",
            ["action"],
            registry=r,
        )
        self.resource_actions_total = Counter(
            "convergence_resource_actions_total",
            "Resource actions by type, action and result (started, success, failure).",
            ["type", "action", "result"],
            registry=r,
        )
        self.resource_action_duration_seconds = Histogram(
            "convergence_resource_action_duration_seconds",
            "Time from the start of a resource action to its end (success or failure).",
            ["type", "action"],
            buckets=_ACTION_BUCKETS,
            registry=r,
        )
        self.nodes_waiting = Gauge(
            "convergence_nodes_waiting",
            "Nodes whose sync point still waits for predecessors.",
            registry=r,
        )
        self.dependency_wait_seconds = Histogram(
            "convergence_dependency_wait_seconds",
            "Time a node waited on its sync point before its predecessors were all done.",
            buckets=_ACTION_BUCKETS,
            registry=r,
        )

    def observe_reconcile(self, controller: str, result: str, seconds: float) -> None:
        """Count one reconciliation of `controller` and its duration."""
        self.reconcile_total.labels(controller, result).inc()
        if result == ERROR:
            self.reconcile_errors_total.labels(controller).inc()
        self.reconcile_time_seconds.labels(controller).observe(seconds)

    def observe_traversal(self, phase: str) -> None:
        """Count a stack phase the operator sees for the first time (started/completed/failed)."""
        counted = traversal_counter(phase)
        if counted is None:
            return
        action, kind = counted
        counter = {
            STARTED: self.traversals_started_total,
            SUCCESS: self.traversals_completed_total,
            FAILURE: self.traversals_failed_total,
        }[kind]
        counter.labels(action).inc()

    def watch_queue_depth(self, name: str, depth: Callable[[], float]) -> None:
        """Export `depth()` as the depth of work queue `name`, read at scrape time."""
        self.workqueue_depth.labels(name).set_function(depth)


def reconcile_result(*, error: bool, requeue_after: float | None) -> str:
    """controller-runtime's result label for one reconciliation.

    `requeue_after` is when the same key runs again: None for done, 0 for at
    once (a conflict), more for later (an action polled, a retry with a delay).
    """
    if error:
        return ERROR
    if requeue_after is None:
        return SUCCESS
    return REQUEUE if requeue_after <= 0 else REQUEUE_AFTER


_ACTION_RESULTS = {
    ActionResult.STARTED: STARTED,
    ActionResult.COMPLETE: SUCCESS,
    ActionResult.FAILED: FAILURE,
}


def resource_action(outcome: StepOutcome) -> tuple[str, str] | None:
    """(action, result) of a step that started or ended a resource action, else None.

    A step that only polled an action counts nothing, nor does one that started
    again what a worker that died had begun (not a new start), nor a step
    without an action (waiting, dropped, unchanged).
    """
    action = outcome.action
    if action is None or (action.result is ActionResult.STARTED and action.again):
        return None
    result = _ACTION_RESULTS.get(action.result)
    return None if result is None else (action.name, result)


def traversal_counter(phase: str) -> tuple[str, str] | None:
    """(action, started|success|failure) of a stack phase, None for INIT or an unknown phase."""
    action, _, status = phase.partition("_")
    if action in ("", "INIT"):
        return None
    kind = {"IN_PROGRESS": STARTED, "COMPLETE": SUCCESS, "FAILED": FAILURE}.get(status)
    return None if kind is None else (action, kind)
