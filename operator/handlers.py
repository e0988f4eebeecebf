"""kopf handlers: the operator carries out the engine's decisions through the Kubernetes API.

One idempotent handler per cause and kind reads the whole current state (kopf
runs one handler per cycle and does not replay a change that lands mid-cycle
to handlers that already succeeded, so routing lives here, not in kopf):

- Stack create/update/resume: when `metadata.generation` differs from
  `status.observedGeneration`, start a traversal converging the stack to its
  spec (create, or update — also while another traversal runs). A cancel
  annotation starts a cancel. An invalid template fails before anything is
  created, with the error in the Stack's status and an Event.
- Stack delete (kopf's finalizer on the Stack): converge to the empty template
  and keep the finalizer until the stack reached DELETE_COMPLETE.
- Stack and StackResource watch events: wake the nodes of the records
  concerned in the work queue. Engine steps run from the queue, one record at a
  time per key; an action in flight is polled by re-adding the key after a
  delay, never awaited inside a handler, so a newer traversal is seen between
  polls. After a restart the initial listing wakes every record again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import kubernetes

from convergence.operator import conditions
from convergence.operator.engine import stack as stack_ops
from convergence.operator.engine.converger import check_resource
from convergence.operator.engine.graph import cleanup_node, update_node
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.runtime import Engine, NodeMessage
from convergence.operator.engine.store import DELETE, Conflict
from convergence.operator.engine.template import TemplateError
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.kube.reality import ConfigMapReality
from convergence.operator.kube.store import KubernetesStore
from convergence.operator.workqueue import WorkQueue

CANCEL_ANNOTATION = f"{GROUP}/cancel"

logger = logging.getLogger("convergence.operator")

# A wake-up of one record's nodes: (namespace, stack, record id).
RecordKey = tuple[str, str, str]


class QueueDispatcher:
    """The engine's Dispatcher: a node message wakes its record in the work queue."""

    def __init__(self, namespace: str, queue: WorkQueue[RecordKey]) -> None:
        self.namespace = namespace
        self.queue = queue

    def trigger(self, message: NodeMessage) -> None:
        self.queue.add((self.namespace, message.stack, message.node.record_id))


@dataclass
class Operator:
    """Process-wide wiring: one Engine per namespace (the store is namespaced), one queue."""

    api: kubernetes.client.ApiClient
    types: TypeRegistry
    queue: WorkQueue[RecordKey] = field(default_factory=WorkQueue)
    engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, namespace: str) -> Engine:
        if namespace not in self.engines:
            self.engines[namespace] = Engine(
                store=KubernetesStore(self.api, namespace),
                types=self.types,
                reality=ConfigMapReality(self.api, namespace),
                dispatcher=QueueDispatcher(namespace, self.queue),
            )
        return self.engines[namespace]

    def step(self, key: RecordKey) -> float | None:
        """Run the nodes of one record once; return when to poll again (None: not needed)."""
        namespace, stack_name, record_id = key
        engine = self.engine(namespace)
        stack = engine.store.get_stack(stack_name)
        if stack is None or not stack.traversal:
            return None
        record = engine.store.get_resource(record_id)
        messages = [
            NodeMessage(stack_name, stack.traversal, update_node(record_id)),
            NodeMessage(stack_name, stack.traversal, cleanup_node(record_id)),
        ]
        if record is not None and record.lock and record.lock != stack.traversal:
            # An action of a stale traversal: it finishes, then re-enters the newest one.
            node = (
                cleanup_node if record.pending and record.pending.action == DELETE else update_node
            )
            messages.insert(0, NodeMessage(stack_name, record.lock, node(record_id)))
        polls = []
        waiting: list[str] | None = None
        for message in messages:
            report = check_resource(engine, message)
            logger.debug("%s/%s %s: %s", namespace, stack_name, message.node, report.outcome)
            if report.poll_after is not None:
                polls.append(report.poll_after)
            if message.node.is_update and report.outcome.startswith("waiting for "):
                waiting = report.outcome.removeprefix("waiting for ").split(", ")
        self.write_resource_conditions(namespace, record_id, waiting)
        return min(polls) if polls else None

    def write_resource_conditions(
        self, namespace: str, record_id: str, waiting: list[str] | None
    ) -> None:
        """Ready and DependenciesReady of a StackResource, written only when they change."""
        engine = self.engine(namespace)
        record = engine.store.get_resource(record_id)
        if record is None:
            return
        objects = kubernetes.client.CustomObjectsApi(self.api)
        body = cast(
            Mapping[str, Any],
            objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, STACK_RESOURCES, record_id
            ),
        )
        _patch_conditions(
            objects,
            namespace,
            STACK_RESOURCES,
            body,
            conditions.resource_conditions(record, waiting),
            {},
        )

    def write_stack_conditions(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """Ready/Progressing/Failed and resource counts of a Stack, written when they change."""
        engine = self.engine(namespace)
        stack = engine.store.get_stack(name)
        if stack is None or not stack.traversal:
            return
        records = engine.store.list_resources(name)
        by_phase: dict[str, int] = {}
        for record in records:
            by_phase[record.phase] = by_phase.get(record.phase, 0) + 1
        counts = {
            "total": len(records),
            "ready": sum(1 for r in records if r.status == "COMPLETE" and r.action != "INIT"),
            "byPhase": by_phase,
        }
        objects = kubernetes.client.CustomObjectsApi(self.api)
        _patch_conditions(
            objects,
            namespace,
            STACKS,
            body,
            conditions.stack_conditions(stack),
            {"resources": counts},
        )


def _patch_conditions(
    objects: kubernetes.client.CustomObjectsApi,
    namespace: str,
    plural: str,
    body: Mapping[str, Any],
    wanted: list[conditions.Condition],
    extra: dict[str, Any],
) -> None:
    """Merge-patch status.conditions (and `extra`) when they differ from the object's.

    This code is the only writer of conditions, so replacing the list whole is safe.
    """
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    merged = conditions.merge(status.get("conditions") or [], wanted, generation)
    if merged == status.get("conditions") and all(status.get(k) == v for k, v in extra.items()):
        return
    patch = {"status": {"conditions": merged, **extra}}
    objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        plural,
        body["metadata"]["name"],
        patch,
        _content_type="application/merge-patch+json",
    )


OPERATOR: Operator | None = None


def _operator() -> Operator:
    if OPERATOR is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return OPERATOR


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR
    settings.persistence.finalizer = f"{GROUP}/stack-cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
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
    operator = OPERATOR = Operator(api=api, types=TypeRegistry.from_entry_points())
    workers = int(os.environ.get("CONVERGENCE_WORKERS", "8"))

    async def process(key: RecordKey) -> float | None:
        try:
            return await asyncio.to_thread(operator.step, key)
        except Conflict:
            return 0.0
        except Exception:
            logger.exception("step of %s failed; retrying", "/".join(key))
            return 2.0

    asyncio.get_running_loop().create_task(OPERATOR.queue.run(process, workers))


def _stack_spec(spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return dict(spec.get("template") or {}), dict(spec.get("parameters") or {})


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
    """Start a traversal for a spec the stack has not converged to yet."""
    assert namespace is not None, "Stack is namespaced"
    operator = _operator()
    engine = operator.engine(namespace)
    generation = meta.get("generation")
    if status.get("observedGeneration") == generation:
        return
    template, parameters = _stack_spec(spec)
    disable_rollback = bool(spec.get("disableRollback", True))
    timeout_minutes = spec.get("timeoutMinutes")
    timeout = float(timeout_minutes) * 60 if timeout_minutes else None
    try:
        record = engine.store.get_stack(name)
        if record is None:
            stack_ops.create_stack(
                engine,
                name,
                template,
                parameters,
                disable_rollback=disable_rollback,
                timeout=timeout,
            )
        else:
            stack_ops.update_stack(
                engine,
                name,
                template,
                parameters,
                disable_rollback=disable_rollback,
                timeout=timeout,
            )
    except TemplateError as exc:
        kopf.warn(body, reason="InvalidTemplate", message=str(exc))
        patch.status["observedGeneration"] = generation
        patch.status["statusReason"] = str(exc)
        patch.status["conditions"] = conditions.merge(
            status.get("conditions") or [],
            [
                {"type": t, "status": v, "reason": "InvalidTemplate", "message": str(exc)}
                for t, v in (("Ready", "False"), ("Progressing", "False"), ("Failed", "True"))
            ],
            generation,
        )
        raise kopf.PermanentError(f"invalid template: {exc}") from exc
    except stack_ops.OperationRefused as exc:
        raise kopf.PermanentError(str(exc)) from exc
    patch.status["observedGeneration"] = generation
    kopf.info(body, reason="StackUpdate", message=f"Converging to generation {generation}")


@kopf.on.delete(GROUP, VERSION, "stacks")
def delete_stack(name: str, namespace: str | None, **_: Any) -> None:
    """Converge to the empty template; hold the finalizer until that is complete."""
    assert namespace is not None, "Stack is namespaced"
    engine = _operator().engine(namespace)
    record = engine.store.get_stack(name)
    if record is None:
        return
    if record.action != DELETE:
        stack_ops.delete_stack(engine, name)
        raise kopf.TemporaryError("deleting the stack's resources", delay=1)
    if record.phase != "DELETE_COMPLETE":
        raise kopf.TemporaryError(f"stack is {record.phase}", delay=2)


@kopf.on.event(GROUP, VERSION, "stackresources")
def wake_record(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """Any change of a StackResource (a push into its sync points, mostly) wakes its nodes."""
    if OPERATOR is None or namespace is None:
        return
    stack = body.get("spec", {}).get("stack")
    if stack:
        OPERATOR.queue.add((namespace, stack, body["metadata"]["name"]))


@kopf.on.event(GROUP, VERSION, "stacks")
def stack_changed(body: kopf.Body, name: str, namespace: str | None, type: str, **_: Any) -> None:
    """A Stack's engine status changed: bring its conditions and counts up to date."""
    if OPERATOR is None or namespace is None or type == "DELETED":
        return
    try:
        OPERATOR.write_stack_conditions(namespace, name, body)
    except kubernetes.client.ApiException as exc:
        if exc.status not in (404, 409, 422):
            raise


@kopf.timer(GROUP, VERSION, "stacks", interval=30, idle=30)
def check_timeout(name: str, namespace: str | None, **_: Any) -> None:
    """A stack whose workers are all idle still notices its deadline."""
    if namespace is not None:
        stack_ops.check_timeout(_operator().engine(namespace), name)
