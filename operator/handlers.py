"""kopf handlers: the operator carries out the engine's decisions through the Kubernetes API.

One idempotent handler per cause and kind reads the whole current state (kopf
runs one handler per cycle and does not replay a change that lands mid-cycle
to handlers that already succeeded, so routing lives here, not in kopf):

- Stack create/update/resume: when `metadata.generation` differs from
  `status.observedGeneration`, start a traversal converging the stack to its
  spec (create, or update — also while another traversal runs), with
  `spec.parametersFrom` read now and merged under `spec.parameters`. A missing
  ConfigMap, Secret or key is reported (statusReason, Failed condition
  `ParametersNotFound`, a Warning Event), nothing starts, and the handler
  retries. An invalid template fails before anything is created, with the
  error in the Stack's status and an Event.
- Cancel and rollback are one kubectl command each. Annotations are part of
  what kopf compares, so a new value fires the update handler, which acts once
  per value (the value handled last is kept in `status.handledCancel` /
  `status.handledRollback`):

      kubectl annotate --overwrite stack NAME convergence.dev/cancel=no-rollback
      kubectl annotate --overwrite stack NAME convergence.dev/cancel=rollback
      kubectl annotate --overwrite stack NAME convergence.dev/rollback="$(date +%s)"
      kubectl annotate --overwrite stack NAME convergence.dev/retry="$(date +%s)"

  Cancel stops the create or update in progress: `no-rollback` ends it
  `*_FAILED` "Stack UPDATE cancelled" (running resource actions finish, nothing
  new starts); `rollback` (updates only, as in Heat) converges back to the last
  template that went in service. Rollback (any new value) converges the
  stack back to that template, also while an operation is in progress (a
  create in progress rolls back to nothing). When the stack's
  state does not allow it, the Stack gets an `OperationRefused` Warning Event
  and statusReason, and nothing changes. Retry (any new value) converges the
  stack to its spec again, as re-issuing a Heat stack update with the same
  template does: applying an unchanged manifest changes no generation, so
  this is how a failed operation is tried again.
- Stack delete (kopf's finalizer on the Stack): converge to the empty template
  and keep the finalizer until the stack reached DELETE_COMPLETE.
- Stack and StackResource watch events: wake the nodes of the records
  concerned in the work queue. Engine steps run from the queue, one record at a
  time per key; an action in flight is polled by re-adding the key after a
  delay, never awaited inside a handler, so a newer traversal is seen between
  polls. After a restart the initial listing wakes every record again.
- Events and metrics follow phase transitions, never polls: each Stack and
  StackResource keeps the phase it last reported in `status.reportedPhase` (a
  Stack's with its traversal: an update during an update is a new start),
  written together with its conditions under a resourceVersion precondition,
  and an Event (reason e.g. CreateInProgress, UpdateComplete, DeleteFailed) is
  posted only after that write succeeded, so a transition is reported once,
  also across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import kubernetes
import prometheus_client

from convergence.operator import conditions, logs, metrics
from convergence.operator.engine import operations
from convergence.operator.engine.converger import (
    StepReport,
    check_resource,
    messages_for_record,
    repair_drift,
)
from convergence.operator.engine.definitions import template_definitions
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.outcome import ActionResult, ResourceAction
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.store import (
    COMPLETE,
    DELETE,
    FAILED,
    IN_PROGRESS,
    INIT,
    Conflict,
    NotFound,
    ResourceRecord,
    StackRecord,
)
from convergence.operator.engine.wiring import Engine
from convergence.operator.kube.api import is_namespace_terminating
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.names import (
    GROUP,
    RESOURCE_FINALIZER,
    STACK_RESOURCES,
    STACKS,
    VERSION,
)
from convergence.operator.kube.objects import KubernetesObjects
from convergence.operator.kube.reality import ConfigMapReality
from convergence.operator.kube.records import resource_from_body, split_phase, status_of
from convergence.operator.kube.secrets import KubernetesSecretStore
from convergence.operator.kube.sources import ParameterSources
from convergence.operator.kube.store import KubernetesStore
from convergence.operator.parameters_from import ParametersUnavailable, merged_parameters
from convergence.operator.workqueue import WorkQueue

CANCEL_ANNOTATION = f"{GROUP}/cancel"
ROLLBACK_ANNOTATION = f"{GROUP}/rollback"
RETRY_ANNOTATION = f"{GROUP}/retry"
KOPF_PREFIX = f"kopf.{GROUP}"
CANCEL_VALUES = ("rollback", "no-rollback")
# Seconds between retries of a stack whose parametersFrom sources are missing.
PARAMETERS_RETRY_DELAY = 5.0

logger = logging.getLogger("convergence.operator")

# A wake-up of one record's nodes: (namespace, stack, record id); with the record id
# REPORT, a report of the stack's conditions and resource counts instead.
RecordKey = tuple[str, str, str]
REPORT = ""
# Template revisions kept beyond those in use, unless spec.revisionHistoryLimit says.
REVISION_HISTORY_LIMIT = 10
# Seconds a stack's report waits for more StackResource phase changes to batch up.
REPORT_DELAY = 1.0

HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409


class QueueDispatcher:
    """The engine's Dispatcher: a node message wakes its record in the work queue."""

    def __init__(self, namespace: str, queue: WorkQueue[RecordKey]) -> None:
        self.namespace = namespace
        self.queue = queue

    def trigger(self, message: NodeMessage) -> None:
        self.queue.add((self.namespace, message.stack, message.node.record_id))


def transition_event(phase: str) -> tuple[str, str] | None:
    """(Event type, reason) reporting that an object reached `phase`; None for INIT phases."""
    action, _, status = phase.partition("_")
    if action in ("", INIT) or status not in (IN_PROGRESS, COMPLETE, FAILED):
        return None
    return ("Warning" if status == FAILED else "Normal"), conditions.camel(phase)


def _object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": body.get("kind"),
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
    }


@dataclass
class Operator:
    """Process-wide wiring: one Engine per namespace (the store is namespaced), one queue."""

    api: kubernetes.client.ApiClient
    types: TypeRegistry
    queue: WorkQueue[RecordKey] = field(default_factory=WorkQueue)
    engines: dict[str, Engine] = field(default_factory=dict)
    caches: dict[str, ObjectCache] = field(default_factory=dict)
    sources: dict[str, ParameterSources] = field(default_factory=dict)
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)
    # Multi-tenant mode: a Stack must name a ServiceAccount to act as (--require-service-account).
    require_service_account: bool = False
    # In-process timing for metrics only (lost on restart, which only skips an observation):
    # when each action in flight started, and since when each node waits on its sync point.
    action_started: dict[str, tuple[str, float]] = field(default_factory=dict)
    waiting_since: dict[tuple[str, bool], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reports_due: set[RecordKey] = set()
        self._reports_lock = threading.Lock()
        self.metrics.watch_queue_depth(metrics.STACK_RESOURCE, lambda: len(self.queue))
        self.metrics.nodes_waiting.set_function(lambda: len(self.waiting_since))

    def cache(self, namespace: str) -> ObjectCache:
        """What the watch streams and our writes told of the namespace's Stacks and resources."""
        return self.caches.setdefault(namespace, ObjectCache())

    def engine(self, namespace: str) -> Engine:
        if namespace not in self.engines:
            objects = KubernetesObjects(self.api, namespace, self.require_service_account)
            self.sources[namespace] = ParameterSources(objects)
            self.engines[namespace] = Engine(
                store=KubernetesStore(self.api, namespace, self.cache(namespace)),
                types=self.types,
                reality=ConfigMapReality(self.api, namespace, self.cache(namespace)),
                dispatcher=QueueDispatcher(namespace, self.queue),
                objects=objects,
                secrets=KubernetesSecretStore(self.api, namespace),
                definitions=functools.partial(template_definitions, project_id=namespace),
            )
        return self.engines[namespace]

    # -- StackResource nodes, run from the work queue --------------------------------------------

    def process(self, key: RecordKey) -> float | None:
        """One reconciliation of a record's nodes, counted; returns when to run it again."""
        with logs.context(namespace=key[0], stack=key[1], resource=key[2] or None):
            return self._process(key)

    def _process(self, key: RecordKey) -> float | None:
        started = time.monotonic()
        active = self.metrics.active_workers.labels(metrics.STACK_RESOURCE)
        active.inc()
        error = False
        again: float | None
        try:
            if key[2] == REPORT:
                with self._reports_lock:
                    self._reports_due.discard(key)
                self.report_stack(key[0], key[1])
                return None
            again = self.step(key)
        except Conflict:
            again = 0.0
        except Exception:
            logger.exception("step of %s failed; retrying", "/".join(key))
            error, again = True, 2.0
        finally:
            active.dec()
        self.metrics.observe_reconcile(
            metrics.STACK_RESOURCE,
            metrics.reconcile_result(error=error, requeue_after=again),
            time.monotonic() - started,
        )
        return again

    def step(self, key: RecordKey) -> float | None:
        """Run the nodes of one record once; return when to poll again (None: not needed)."""
        namespace, stack_name, record_id = key
        engine = self.engine(namespace)
        stack = engine.store.get_stack(stack_name)
        if stack is None or not stack.traversal:
            return None
        record = engine.store.get_resource(record_id)
        with logs.context(
            resource=record.name if record is not None else record_id, traversal=stack.traversal
        ):
            return self._step(engine, key, stack, record)

    def _step(
        self,
        engine: Engine,
        key: RecordKey,
        stack: StackRecord,
        record: ResourceRecord | None,
    ) -> float | None:
        namespace, _, record_id = key
        messages = messages_for_record(stack, record_id, record)
        polls = []
        waiting: list[str] | None = None
        deleted = False
        for message in messages:
            report = check_resource(engine, message)
            outcome = report.outcome
            logger.debug("%s: %s", message.node, outcome)
            self.count_step(report, record)
            if report.poll_after is not None:
                polls.append(report.poll_after)
            if message.node.is_update and outcome.waiting:
                waiting = [str(node) for node in outcome.waiting_for]
            deleted = deleted or outcome.action == ResourceAction(DELETE, ActionResult.COMPLETE)
        if deleted and record is not None:
            self.post_event(
                namespace,
                self._resource_ref(namespace, record_id),
                "Normal",
                "DeleteComplete",
                f"{record.name} ({record.type}): DELETE completed",
            )
        self.write_resource_conditions(namespace, record_id, waiting)
        return min(polls) if polls else None

    def count_step(self, report: StepReport, record: ResourceRecord | None) -> None:
        """Metrics of one step: resource actions started and ended, sync point waits."""
        node = report.message.node
        node_key = (node.record_id, node.is_update)
        now = time.monotonic()
        if report.outcome.waiting:
            self.waiting_since.setdefault(node_key, now)
        else:
            since = self.waiting_since.pop(node_key, None)
            if since is not None and not report.outcome.kind.dropped:
                self.metrics.dependency_wait_seconds.observe(now - since)
        action = metrics.resource_action(report.outcome)
        if action is None or record is None:
            return
        name, result = action
        self.metrics.resource_actions_total.labels(record.type, name, result).inc()
        if result == metrics.STARTED:
            self.action_started[node.record_id] = (name, now)
            return
        started = self.action_started.pop(node.record_id, None)
        if started is not None and started[0] == name:
            self.metrics.resource_action_duration_seconds.labels(record.type, name).observe(
                now - started[1]
            )

    @staticmethod
    def _resource_ref(namespace: str, record_id: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StackResource",
            "metadata": {"name": record_id, "namespace": namespace},
        }

    def write_resource_conditions(
        self, namespace: str, record_id: str, waiting: list[str] | None
    ) -> None:
        """Ready and DependenciesReady of a StackResource, and an Event for a new phase."""
        objects = kubernetes.client.CustomObjectsApi(self.api)
        try:
            # The newest body this process knows: a newer one fails the patch below,
            # and its own watch event brings the conditions up to date.
            body = self.cache(namespace).get(STACK_RESOURCES, record_id) or cast(
                Mapping[str, Any],
                objects.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, STACK_RESOURCES, record_id
                ),
            )
            record = resource_from_body(body)
            reported = _patch_conditions(
                objects,
                namespace,
                STACK_RESOURCES,
                body,
                conditions.resource_conditions(record, waiting),
                {},
                record.phase,
                self.cache(namespace),
            )
        except kubernetes.client.ApiException as exc:
            # Gone, or written meanwhile: that write's watch event wakes the record again.
            if exc.status in (HTTP_NOT_FOUND, HTTP_CONFLICT):
                return
            raise
        event = transition_event(record.phase) if reported else None
        if event is not None:
            reason = f": {record.status_reason}" if record.status == FAILED else ""
            self.post_event(
                namespace,
                body,
                event[0],
                event[1],
                f"{record.name} ({record.type}): {record.phase.replace('_', ' ', 1)}{reason}",
            )

    # -- Stacks -------------------------------------------------------------------------------

    def report_stack(self, namespace: str, name: str) -> None:
        """Conditions and counts of a Stack; an Event and traversal metrics for a new phase.

        Both come from the cache (counts are a report, not a decision); a newer
        Stack than the cached one makes the patch fail, and its event reports again.
        """
        engine = self.engine(namespace)
        body = self.cache(namespace).get(STACKS, name)
        stack = engine.store.get_stack(name)
        if body is None or stack is None or not stack.traversal:
            return
        with logs.context(namespace=namespace, stack=name, traversal=stack.traversal):
            self._report_stack(engine, namespace, body, stack)

    def _report_stack(
        self, engine: Engine, namespace: str, body: Mapping[str, Any], stack: StackRecord
    ) -> None:
        name = stack.name
        resources = self.cache(namespace).resources_of(name)
        counts = resource_counts(resources)
        wanted = conditions.stack_conditions(stack)
        deleted = [
            f"{r['spec']['resource']} (StackResource {r['metadata']['name']})"
            for r in resources
            if deleted_while_in_use(r, stack.action)
        ]
        present = {c.get("type") for c in (body.get("status") or {}).get("conditions") or []}
        if deleted or "ResourceDeleted" in present:
            wanted.append(conditions.deleted_resources_condition(deleted, name))
        phase = f"{stack.phase}/{stack.traversal}"
        reporting = (body.get("status") or {}).get("reportedPhase") != phase
        if reporting and stack.status in (COMPLETE, FAILED) and stack.action != DELETE:
            # Before the report, so that a reported phase means the revisions are tended
            # too (marking and pruning are idempotent: a refused report does them again).
            self.tend_revisions(namespace, stack, body)
        objects = kubernetes.client.CustomObjectsApi(self.api)
        # The patch carries the cached body's resourceVersion: when the Stack changed
        # since, it fails, and the newer version's own event reports it.
        try:
            reported = _patch_conditions(
                objects,
                namespace,
                STACKS,
                body,
                wanted,
                {"resources": counts},
                phase,
                self.cache(namespace),
            )
        except kubernetes.client.ApiException as exc:
            if exc.status in (HTTP_NOT_FOUND, HTTP_CONFLICT, 422):
                return
            raise
        if not reported:
            return
        self.metrics.observe_traversal(stack.phase)
        event = transition_event(stack.phase)
        if event is not None:
            self.post_event(namespace, body, event[0], event[1], stack.status_reason or stack.phase)

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
        newest = self.cache(namespace).get(STACKS, str(body["metadata"]["name"]))
        if not phase.endswith(f"_{FAILED}") or newest is None:
            return
        if status_of(newest).get("traversal") == traversal:
            return  # still current: the report posts it
        event = transition_event(phase)
        if event is not None:
            self.metrics.observe_traversal(phase)
            reason = str(status.get("statusReason") or phase)
            self.post_event(namespace, body, event[0], event[1], reason)

    def tend_revisions(self, namespace: str, stack: StackRecord, body: Mapping[str, Any]) -> None:
        """Mark the last completed template revision; prune beyond spec.revisionHistoryLimit.

        Kept whatever the limit: the current and last completed revisions and
        every revision a record's state or action in flight refers to.
        """
        store = self.engine(namespace).store
        if not isinstance(store, KubernetesStore):
            return
        limit = int((body.get("spec") or {}).get("revisionHistoryLimit", REVISION_HISTORY_LIMIT))
        keep = {r for r in (stack.template, stack.prev_template) if r is not None}
        for record in store.list_resources(stack.name):
            keep.update(r for r in (record.template,) if r is not None)
            if record.pending is not None and record.pending.template is not None:
                keep.add(record.pending.template)
        try:
            pruned = store.prune_templates(stack.name, keep, limit)
            if pruned:
                logger.info("stack %s: pruned %d old template revisions", stack.name, len(pruned))
        except (kubernetes.client.ApiException, NotFound) as exc:
            logger.warning("could not prune the revisions of stack %s: %s", stack.name, exc)
        try:
            store.mark_last_completed(stack.name, stack.prev_template)
        except (kubernetes.client.ApiException, NotFound) as exc:
            logger.warning("could not mark the last completed revision of %s: %s", stack.name, exc)

    def report_deleted_by_hand(
        self, namespace: str, stack_name: str, body: Mapping[str, Any]
    ) -> None:
        """Warn on the StackResource and its Stack when a StackResource in use is deleted."""
        stack = self.engine(namespace).store.get_stack(stack_name)
        if stack is None or not deleted_while_in_use(body, stack.action):
            return
        stack_body = self.cache(namespace).get(STACKS, stack_name)
        if stack_body is not None and stack_body["metadata"].get("deletionTimestamp"):
            return  # the Stack is going too (its namespace is being deleted, say)
        message = (
            f"StackResource {body['metadata']['name']} ({body['spec']['resource']}) was deleted "
            "while the stack uses it; its physical resource is kept until the stack's next "
            "update replaces it"
        )
        self.post_event(namespace, body, "Warning", "DeletedWhileInUse", message)
        if stack_body is not None:
            self.post_event(namespace, stack_body, "Warning", "DeletedWhileInUse", message)
        self.schedule_report(namespace, stack_name)

    def schedule_report(self, namespace: str, stack: str) -> None:
        """Report the stack's counts soon, once for all the changes until then."""
        key = (namespace, stack, REPORT)
        with self._reports_lock:
            if key in self._reports_due:
                return
            self._reports_due.add(key)
        self.queue.add_after(key, REPORT_DELAY)

    def post_event(
        self, namespace: str, body: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post a core/v1 Event about `body` (the work queue runs outside kopf's event poster).

        It is logged too: an Event marks an action's start, completion or failure
        (never a poll), which is what the log should tell.
        """
        ref = _object_ref(body)
        logger.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s %s/%s: %s",
            reason,
            ref["kind"],
            ref["name"],
            message,
        )
        now = datetime.datetime.now(datetime.UTC)
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(generate_name="convergence-"),
            involved_object=kubernetes.client.V1ObjectReference(**_object_ref(body)),
            type=type_,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=kubernetes.client.V1EventSource(component="convergence"),
            reporting_component="convergence",
            reporting_instance=os.environ.get("HOSTNAME", "convergence"),
        )
        try:
            kubernetes.client.CoreV1Api(self.api).create_namespaced_event(namespace, event)
        except kubernetes.client.ApiException as exc:
            # An Event is a report, never a reason to fail a step; and none can be
            # posted in a namespace being deleted, which is no news.
            if is_namespace_terminating(exc):
                return
            logger.warning(
                "could not post event %s on %s %s: %s", reason, ref["kind"], ref["name"], exc.reason
            )

    def read_source(
        self, namespace: str, service_account: str | None, kind: str, name: str
    ) -> Mapping[str, str] | None:
        """The string data of a ConfigMap or Secret named by spec.parametersFrom (None: absent),
        read as the stack's identity (`kube/sources.py`)."""
        self.engine(namespace)
        return self.sources[namespace].read(service_account, kind, name)


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


def resource_counts(bodies: list[Mapping[str, Any]]) -> dict[str, Any]:
    """status.resources of a Stack: its StackResources in all, in service, and by phase."""
    by_phase: dict[str, int] = {}
    ready = 0
    for body in bodies:
        phase = str(status_of(body).get("phase") or f"{INIT}_{COMPLETE}")
        by_phase[phase] = by_phase.get(phase, 0) + 1
        action, state = split_phase(phase)
        ready += state == COMPLETE and action != INIT
    return {"total": len(bodies), "ready": ready, "byPhase": by_phase}


def _patch_conditions(
    objects: kubernetes.client.CustomObjectsApi,
    namespace: str,
    plural: str,
    body: Mapping[str, Any],
    wanted: list[conditions.Condition],
    extra: dict[str, Any],
    phase: str,
    cache: ObjectCache,
) -> bool:
    """Merge-patch status.conditions, `extra` and reportedPhase when they differ from the object's.

    This code is the only writer of conditions, so replacing the list whole is
    safe. The patch carries the body's resourceVersion, so it fails (409) when
    the object changed since: the newer version comes with its own watch event.
    Returns whether `phase` is newly reported (its Event is to be posted).
    """
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    merged = conditions.merge(status.get("conditions") or [], wanted, generation)
    new_phase = status.get("reportedPhase") != phase
    if (
        not new_phase
        and merged == status.get("conditions")
        and all(status.get(k) == v for k, v in extra.items())
    ):
        return False
    patch = {
        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
        "status": {"conditions": merged, "reportedPhase": phase, **extra},
    }
    written = objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        plural,
        body["metadata"]["name"],
        patch,
        _content_type="application/merge-patch+json",
    )
    cache.observe(plural, cast(Mapping[str, Any], written))
    return new_phase


OPERATOR: Operator | None = None
# Set by `convergence run` before kopf starts: the /metrics port (0: no metrics server).
METRICS_PORT = 0
# Set by `convergence run --require-service-account`.
REQUIRE_SERVICE_ACCOUNT = False


def _operator() -> Operator:
    if OPERATOR is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return OPERATOR


@contextlib.contextmanager
def _reconciling(controller: str, namespace: str, name: str) -> Iterator[None]:
    """Count one kopf handler call as a reconciliation of `controller`; log it as about `name`."""
    with logs.context(namespace=namespace, stack=name), _counted(controller):
        yield


@contextlib.contextmanager
def _counted(controller: str) -> Iterator[None]:
    if OPERATOR is None:
        yield
        return
    recorder = OPERATOR.metrics
    active = recorder.active_workers.labels(controller)
    active.inc()
    started = time.monotonic()
    error, again = False, None
    try:
        yield
    except kopf.TemporaryError as exc:
        again = float(exc.delay or 0)
        raise
    except Exception:
        error = True
        raise
    finally:
        active.dec()
        recorder.observe_reconcile(
            controller,
            metrics.reconcile_result(error=error, requeue_after=again),
            time.monotonic() - started,
        )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR
    settings.persistence.finalizer = f"{GROUP}/stack-cleanup"
    # kopf leaves every annotation under its storage prefix out of what it compares, so
    # its own annotations live under a sub-domain and the user's convergence.dev/cancel
    # and convergence.dev/rollback still fire the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "convergence"
    settings.posting.event_name_prefix = "convergence-"
    settings.watching.server_timeout = 300
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        api = kubernetes.config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = kubernetes.client.ApiClient()
    operator = OPERATOR = Operator(
        api=api,
        types=TypeRegistry.from_entry_points(),
        require_service_account=REQUIRE_SERVICE_ACCOUNT,
    )
    if METRICS_PORT:
        try:
            prometheus_client.start_http_server(METRICS_PORT, registry=operator.metrics.registry)
            logger.info("metrics on :%d/metrics", METRICS_PORT)
        except OSError as exc:
            # Metrics are for watching the operator; they never stop it from working.
            logger.error("no metrics: cannot listen on port %d: %s", METRICS_PORT, exc)
    workers = int(os.environ.get("CONVERGENCE_WORKERS", "8"))

    async def process(key: RecordKey) -> float | None:
        return await asyncio.to_thread(operator.process, key)

    asyncio.get_running_loop().create_task(OPERATOR.queue.run(process, workers))


def _condition_patch(
    status: Mapping[str, Any], generation: int | None, reason: str, message: str
) -> list[conditions.Condition]:
    """Ready/Progressing False and Failed True, for a stack that could not start."""
    return conditions.merge(
        status.get("conditions") or [],
        [
            {"type": t, "status": v, "reason": reason, "message": message}
            for t, v in (("Ready", "False"), ("Progressing", "False"), ("Failed", "True"))
        ],
        generation,
    )


def _start_traversal(
    operator: Operator,
    engine: Engine,
    spec: kopf.Spec,
    status: kopf.Status,
    name: str,
    namespace: str,
    generation: int | None,
    body: kopf.Body,
    patch: kopf.Patch,
) -> None:
    """Create or update the stack to its spec, parametersFrom included."""
    try:
        parameters = merged_parameters(
            spec.get("parameters"),
            spec.get("parametersFrom"),
            lambda kind, source: operator.read_source(
                namespace, spec.get("serviceAccountName"), kind, source
            ),
        )
    except ParametersUnavailable as exc:
        message = str(exc)
        if status.get("statusReason") != message:
            kopf.warn(body, reason=exc.reason, message=message)
        patch.status["statusReason"] = message
        patch.status["conditions"] = _condition_patch(status, generation, exc.reason, message)
        raise kopf.TemporaryError(message, delay=PARAMETERS_RETRY_DELAY) from exc
    template = dict(spec.get("template") or {})
    disable_rollback = bool(spec.get("disableRollback", True))
    timeout = stack_timeout(spec)
    try:
        if engine.store.get_stack(name) is None:
            started = operations.create_stack(
                engine,
                name,
                template,
                parameters,
                disable_rollback=disable_rollback,
                timeout=timeout,
                environment=spec.get("environment"),
            )
        else:
            started = operations.update_stack(
                engine,
                name,
                template,
                parameters,
                disable_rollback=disable_rollback,
                timeout=timeout,
                environment=spec.get("environment"),
            )
    except TemplateError as exc:
        # TemplateError messages never carry a hidden parameter's value (the engine masks it).
        kopf.warn(body, reason="InvalidTemplate", message=str(exc))
        patch.status["observedGeneration"] = generation
        patch.status["statusReason"] = str(exc)
        patch.status["conditions"] = _condition_patch(
            status, generation, "InvalidTemplate", str(exc)
        )
        raise kopf.PermanentError(f"invalid template: {exc}") from exc
    except operations.OperationRefused as exc:
        _refuse(body, patch, str(exc))
        patch.status["observedGeneration"] = generation
        return
    patch.status["observedGeneration"] = generation
    logger.info(
        "%s of generation %s started",
        started.action,
        generation,
        extra={"traversal": started.traversal},
    )
    kopf.info(body, reason="StackUpdate", message=f"Converging to generation {generation}")


def stack_timeout(spec: Mapping[str, Any]) -> float | None:
    """Seconds each operation of the stack may take (None: no limit)."""
    if spec.get("timeoutSeconds"):
        return float(spec["timeoutSeconds"])
    if spec.get("timeoutMinutes"):
        return float(spec["timeoutMinutes"]) * 60
    return None


def _refuse(body: kopf.Body, patch: kopf.Patch, message: str) -> None:
    kopf.warn(body, reason="OperationRefused", message=message)
    patch.status["statusReason"] = f"Operation refused: {message}"


def _cancel(engine: Engine, name: str, value: str, body: kopf.Body, patch: kopf.Patch) -> None:
    """Carry out a new value of the cancel annotation."""
    if value not in CANCEL_VALUES:
        _refuse(body, patch, f"{CANCEL_ANNOTATION} must be one of {', '.join(CANCEL_VALUES)}")
        return
    try:
        operations.cancel_update(engine, name, rollback=value == "rollback")
    except (operations.OperationRefused, operations.StackNotFound) as exc:
        _refuse(body, patch, str(exc))
        return
    kopf.info(body, reason="CancelRequested", message=f"Cancel ({value}) of the operation")


def _rollback(engine: Engine, name: str, body: kopf.Body, patch: kopf.Patch) -> None:
    """Carry out a new value of the rollback annotation."""
    stack = engine.store.get_stack(name)
    try:
        if stack is None:
            raise operations.OperationRefused(f"Stack {name} has not been created")
        if stack.action == DELETE:
            raise operations.OperationRefused(f"Cannot roll back when stack is {stack.phase}")
        operations.rollback_stack(engine, name)
    except operations.OperationRefused as exc:
        _refuse(body, patch, str(exc))
        return
    kopf.info(body, reason="RollbackRequested", message="Rolling back to the last good template")


@kopf.on.resume(GROUP, VERSION, "stacks")
@kopf.on.create(GROUP, VERSION, "stacks")
@kopf.on.update(GROUP, VERSION, "stacks")
def reconcile_stack(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Start a traversal for a spec not converged to yet; carry out new cancel/rollback requests."""
    assert namespace is not None, "Stack is namespaced"
    with _reconciling(metrics.STACK, namespace, name):
        operator = _operator()
        engine = operator.engine(namespace)
        generation = meta.get("generation")
        # The body kopf hands us can predate our own last write (a long create
        # while events queue up makes kopf see a CREATE cause again): decide on
        # the status as it is now, or the same generation starts twice.
        current = _fresh_status(operator, namespace, name, status)
        if current.get("observedGeneration") != generation:
            _start_traversal(
                operator, engine, spec, status, name, namespace, generation, body, patch
            )
        annotations = meta.get("annotations") or {}
        cancel = annotations.get(CANCEL_ANNOTATION)
        if cancel is not None and cancel != current.get("handledCancel"):
            patch.status["handledCancel"] = cancel
            _cancel(engine, name, cancel, body, patch)
        retry = annotations.get(RETRY_ANNOTATION)
        if retry is not None and retry != current.get("handledRetry"):
            patch.status["handledRetry"] = retry
            if current.get("observedGeneration") == generation:
                _start_traversal(
                    operator, engine, spec, status, name, namespace, generation, body, patch
                )
        rollback = annotations.get(ROLLBACK_ANNOTATION)
        if rollback is not None and rollback != current.get("handledRollback"):
            patch.status["handledRollback"] = rollback
            _rollback(engine, name, body, patch)
        # On resume: a failure whose automatic rollback a restart cut off rolls back now.
        if operations.resume_lost_rollback(engine, name):
            logger.info("stack %s: starting the rollback its failure was due", name)


def _fresh_status(
    operator: Operator, namespace: str, name: str, fallback: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The Stack's status read from the API now (the handler's copy may be stale)."""
    try:
        body = kubernetes.client.CustomObjectsApi(operator.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, STACKS, name
        )
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return fallback
        raise
    return cast(Mapping[str, Any], cast(dict[str, Any], body).get("status") or {})


@kopf.on.delete(GROUP, VERSION, "stacks")
def delete_stack(name: str, namespace: str | None, **_: Any) -> None:
    """Converge to the empty template; hold the finalizer until that is complete."""
    assert namespace is not None, "Stack is namespaced"
    with _reconciling(metrics.STACK, namespace, name):
        engine = _operator().engine(namespace)
        record = engine.store.get_stack(name)
        if record is None:
            return
        if record.action != DELETE:
            operations.delete_stack(engine, name)
            raise kopf.TemporaryError("deleting the stack's resources", delay=1)
        if record.phase != "DELETE_COMPLETE":
            raise kopf.TemporaryError(f"stack is {record.phase}", delay=2)
        # Its template revisions (and their values' Secrets) and traversal graphs
        # go now, not whenever the garbage collector gets to what the Stack owned.
        if isinstance(engine.store, KubernetesStore):
            engine.store.prune_templates(name, set(), 0)
            engine.store.drop_graphs(name)


@kopf.on.event(GROUP, VERSION, "stackresources")
def wake_record(body: kopf.Body, namespace: str | None, type: str | None, **_: Any) -> None:
    """Any change of a StackResource (a push into its sync points, mostly) wakes its nodes.

    The cache learns the new body first, so the step it wakes reads at least this.
    A changed phase also schedules a report of the stack's counts (batched).
    """
    if OPERATOR is None or namespace is None:
        return
    cache = OPERATOR.cache(namespace)
    name = body["metadata"]["name"]
    known = cache.get(STACK_RESOURCES, name)
    if type == "DELETED":
        cache.forget(STACK_RESOURCES, body)
    else:
        cache.observe(STACK_RESOURCES, body)
    stack = body.get("spec", {}).get("stack")
    if not stack:
        return
    OPERATOR.queue.add((namespace, stack, name))
    phase = status_of(body).get("phase")
    newly_deleted = bool(body["metadata"].get("deletionTimestamp")) and not (
        known is not None and known["metadata"].get("deletionTimestamp")
    )
    if type == "DELETED" or known is None or status_of(known).get("phase") != phase:
        OPERATOR.schedule_report(namespace, stack)
    if newly_deleted:
        OPERATOR.report_deleted_by_hand(namespace, stack, body)


@kopf.on.event(GROUP, VERSION, "stacks")
def stack_changed(body: kopf.Body, name: str, namespace: str | None, type: str, **_: Any) -> None:
    """A Stack's engine status changed: bring its conditions and counts up to date."""
    if OPERATOR is None or namespace is None:
        return
    cache = OPERATOR.cache(namespace)
    if type == "DELETED":
        cache.forget(STACKS, body)
        return
    cache.observe(STACKS, body)
    OPERATOR.report_stack(namespace, name)
    OPERATOR.report_passed_failure(namespace, body)


@kopf.timer(GROUP, VERSION, "stacks", interval=30, idle=30)
def check_timeout(name: str, namespace: str | None, **_: Any) -> None:
    """A stack whose workers are all idle still notices its deadline (and a lost rollback)."""
    if namespace is not None:
        engine = _operator().engine(namespace)
        operations.check_timeout(engine, name)
        operations.resume_lost_rollback(engine, name)


# Seconds between drift checks of a stack at rest (CONVERGENCE_DRIFT_INTERVAL).
DRIFT_INTERVAL = float(os.environ.get("CONVERGENCE_DRIFT_INTERVAL", "30"))


@kopf.timer(GROUP, VERSION, "stacks", interval=DRIFT_INTERVAL, idle=DRIFT_INTERVAL)
def check_drift(
    spec: kopf.Spec, name: str, namespace: str | None, body: kopf.Body, **_: Any
) -> None:
    """Heat's "observe reality" between traversals: put back what someone else changed.

    Runs only on a stack at rest (the engine looks at COMPLETE stacks only) and
    unless `spec.repairDrift` is false. Each repair is a Warning Event on the
    Stack; the `Drifted` condition names what the last check found.
    """
    if namespace is None or not spec.get("repairDrift", True):
        return
    operator = _operator()
    drifts = repair_drift(operator.engine(namespace), name)
    for drift in drifts:
        operator.post_event(
            namespace,
            body,
            "Warning",
            "DriftRepaired" if drift.repaired else "DriftRepairFailed",
            f"{drift.resource} ({drift.type}): {drift.message}",
        )
    found = [f"{d.resource} ({d.type}): {d.message}" for d in drifts]
    previous = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
    if not found and "Drifted" not in previous:
        return  # never drifted: no condition to keep up to date
    merged = conditions.merge(
        (body.get("status") or {}).get("conditions") or [],
        [conditions.drift_condition(found)],
        body.get("metadata", {}).get("generation"),
    )
    if merged == (body.get("status") or {}).get("conditions"):
        return
    patch = {
        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
        "status": {"conditions": merged},
    }
    try:
        kubernetes.client.CustomObjectsApi(operator.api).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, STACKS, name, patch
        )
    except kubernetes.client.ApiException as exc:
        # Changed meanwhile: the next check writes the condition.
        if exc.status not in (HTTP_NOT_FOUND, HTTP_CONFLICT):
            raise
