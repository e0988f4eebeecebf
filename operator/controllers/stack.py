"""The Stack controller: start traversals, carry out cancel/rollback/retry, delete, report.

- Create/update/resume: when `metadata.generation` differs from
  `status.observedGeneration`, start a traversal converging the stack to its
  spec (create, or update — also while another traversal runs), with
  `spec.parametersFrom` and `spec.filesFrom` read now (as the stack's
  identity) and merged under `spec.parameters` and `spec.files`. A missing
  ConfigMap, Secret or key, or one the stack may not read, is reported
  (statusReason, Failed condition `ParametersNotFound`, `ParametersForbidden`,
  `FilesNotFound` or `FilesForbidden`, a Warning Event), nothing starts, and
  the request is retried. An invalid template fails before anything is created, with every
  error in the Stack's status and an Event, and a Stack never created shows
  CREATE_FAILED (the validating webhook, controllers/admission.py, refuses
  most such specs at `kubectl apply` already).
- Cancel, rollback and retry are one kubectl command each. Annotations are
  part of what kopf compares, so an annotation that appears or changes is a
  request; once carried out it is recorded in status and consumed (taken off
  the Stack), so the same command later is a new request (`requests` says
  when a value counts as handled already):

      kubectl annotate --overwrite stack NAME convergence.dev/cancel=no-rollback
      kubectl annotate --overwrite stack NAME convergence.dev/cancel=rollback
      kubectl annotate --overwrite stack NAME convergence.dev/rollback="$(date +%s)"
      kubectl annotate --overwrite stack NAME convergence.dev/retry="$(date +%s)"

  Cancel stops the create or update in progress: `no-rollback` ends it
  `*_FAILED` "Stack UPDATE cancelled" (running resource actions finish, nothing
  new starts); `rollback` (updates only, as in Heat) converges back to the last
  template that went in service. Rollback (any new value) converges the
  stack back to that template, also while an operation is in progress (a
  create in progress rolls back to nothing). When the stack's state does not
  allow it, the Stack gets an `OperationRefused` Warning Event and
  statusReason, and nothing changes. Retry (any new value) converges the
  stack to its spec again, as re-issuing a Heat stack update with the same
  template does: applying an unchanged manifest changes no generation, so
  this is how a failed operation is tried again.
- Delete (behind kopf's finalizer on the Stack): converge to the empty
  template, and let the Stack go once it reached DELETE_COMPLETE.
- Reports: the Stack's conditions and counts, brought up to date when its
  engine status changes and when its StackResources change phase (batched);
  a report that sees a traversal ended tends the template revisions first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any, cast

import kubernetes

from convergence.operator import logs
from convergence.operator.controllers import Notify, Rejected, Requeue
from convergence.operator.controllers.requests import (
    CANCEL,
    CANCEL_VALUES,
    KINDS,
    ROLLBACK,
    RequestKind,
    pending,
)
from convergence.operator.engine import operations
from convergence.operator.engine.graph import cleanup_node
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.store import (
    COMPLETE,
    CREATE,
    DELETE,
    FAILED,
    NotFound,
    StackRecord,
)
from convergence.operator.engine.wiring import Engine
from convergence.operator.kube.api import (
    JSON_PATCH,
    MERGE_PATCH,
    is_conflict,
    is_invalid,
    is_not_found,
)
from convergence.operator.kube.names import GROUP, STACKS, VERSION, json_pointer_token
from convergence.operator.kube.records import status_of
from convergence.operator.namespaces import Namespaces
from convergence.operator.parameters_from import (
    ParametersUnavailable,
    merged_files,
    merged_parameters,
)
from convergence.operator.spec import StackSpec
from convergence.operator.status import Status, not_started, stack_report

# Seconds between retries of a stack whose parametersFrom sources are missing.
PARAMETERS_RETRY_DELAY = 5.0

logger = logging.getLogger("convergence.operator")


@dataclass(frozen=True)
class StackRequest:
    """A Stack as a handler was given it: what the controller reads of it."""

    namespace: str
    name: str
    generation: int | None
    annotations: Mapping[str, str]
    # The status kopf handed over (possibly older than the API's: see `fresh`).
    status: Mapping[str, Any]
    spec: StackSpec

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> StackRequest:
        """The request of a Stack's body."""
        metadata = body.get("metadata") or {}
        return cls(
            namespace=str(metadata.get("namespace")),
            name=str(metadata.get("name")),
            generation=metadata.get("generation"),
            annotations=dict(metadata.get("annotations") or {}),
            status=status_of(body),
            spec=StackSpec.of(body),
        )


class StackController:
    """Carries out Stack requests through the engine of the Stack's namespace."""

    def __init__(self, namespaces: Namespaces, status: Status) -> None:
        self.namespaces = namespaces
        self.status = status

    # -- create, update, cancel, rollback, retry --------------------------------------------------

    def reconcile(
        self, request: StackRequest, patch: MutableMapping[str, Any], notify: Notify
    ) -> None:
        """Start a traversal for a spec not converged to yet; carry out new requests.

        `patch` collects the Stack's status fields to write; raises Requeue
        (parametersFrom missing) or Rejected (an invalid template).
        """
        try:
            self._reconcile(request, patch, notify)
        finally:
            # Never backwards: see observe_generation.
            if "observedGeneration" in patch:
                self.observe_generation(request, patch)

    def _reconcile(
        self, request: StackRequest, patch: MutableMapping[str, Any], notify: Notify
    ) -> None:
        engine = self.namespaces.engine(request.namespace)
        name, generation = request.name, request.generation
        # The body kopf hands us can predate our own last write (a long create
        # while events queue up makes kopf see a CREATE cause again): decide on
        # the status as it is now, or the same generation starts twice.
        fresh = self.fresh(request)
        current = fresh.status
        if current.get("observedGeneration") != generation:
            self._start_traversal(engine, request, patch, notify)

        def is_current(traversal: str) -> bool:
            return engine.store.is_current(name, traversal)

        def traversal() -> str:
            stack = engine.store.get_stack(name)
            return "" if stack is None else stack.traversal

        for kind in KINDS:
            value = fresh.annotations.get(kind.annotation)
            if value is None:
                continue
            try:
                if pending(kind, fresh.annotations, current, is_current) is not None:
                    self._carry_out(kind, value, engine, request, current, patch, notify)
                else:
                    logger.info("stack %s: %s=%s was handled already", name, kind.annotation, value)
            finally:
                # Recorded and consumed even when it failed: a request is tried once.
                patch.update(kind.marker(value, traversal()))
                self.consume(request, patch, kind, value)
        # On resume: a failure whose automatic rollback a restart cut off rolls back now.
        if operations.resume_lost_rollback(engine, name):
            logger.info("stack %s: starting the rollback its failure was due", name)

    def _carry_out(
        self,
        kind: RequestKind,
        value: str,
        engine: Engine,
        request: StackRequest,
        current: Mapping[str, Any],
        patch: MutableMapping[str, Any],
        notify: Notify,
    ) -> None:
        """Carry out a request by annotation."""
        if kind is CANCEL:
            self._cancel(engine, request.name, value, patch, notify)
        elif kind is ROLLBACK:
            self._rollback(engine, request.name, patch, notify)
        elif current.get("observedGeneration") == request.generation:
            # A retry; a new generation has just been started above.
            self._start_traversal(engine, request, patch, notify, retry=value)

    def observe_generation(self, request: StackRequest, patch: MutableMapping[str, Any]) -> None:
        """Write `patch` (status fields with `observedGeneration`) now, unless the Stack has
        taken up that generation or a newer one already: then leave the rest of it to kopf.

        The write is conditional on the Stack's resourceVersion, read just before:
        another replica may have taken up a newer generation meanwhile, and this
        one, if it was frozen (or slow) since it read the Stack, must not move
        the stack's observedGeneration back. kopf's own patch would: it is a
        merge patch written when the handler ends, and kopf's record of the last
        spec handled, which the replicas share, means no handler runs again to
        mend it.
        """
        generation = int(patch["observedGeneration"])
        objects = kubernetes.client.CustomObjectsApi(self.namespaces.api)
        where = (GROUP, VERSION, request.namespace, STACKS, request.name)
        while True:
            try:
                body = cast(Mapping[str, Any], objects.get_namespaced_custom_object(*where))
            except kubernetes.client.ApiException as exc:
                if is_not_found(exc):
                    return
                raise
            observed = (body.get("status") or {}).get("observedGeneration")
            if isinstance(observed, int) and observed >= generation:
                del patch["observedGeneration"]
                return
            conditional = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": dict(patch),
            }
            try:
                objects.patch_namespaced_custom_object_status(
                    *where, conditional, _content_type=MERGE_PATCH
                )
            except kubernetes.client.ApiException as exc:
                if is_not_found(exc):
                    return
                if is_conflict(exc):
                    continue
                raise
            patch.clear()
            return

    def consume(
        self, request: StackRequest, status: Mapping[str, Any], kind: RequestKind, value: str
    ) -> None:
        """Write `status` (with the request's record) now, then take the annotation off.

        In this order, so that a client that sees the annotation gone finds the
        outcome in status. The annotation goes only if it still has `value`: a
        newer value is a newer request, for the next call.
        """
        objects = kubernetes.client.CustomObjectsApi(self.namespaces.api)
        where = (GROUP, VERSION, request.namespace, STACKS, request.name)
        pointer = f"/metadata/annotations/{json_pointer_token(kind.annotation)}"
        take_off = [
            {"op": "test", "path": pointer, "value": value},
            {"op": "remove", "path": pointer},
        ]
        # observedGeneration is written apart (observe_generation), never in a plain patch.
        written = {key: value for key, value in status.items() if key != "observedGeneration"}
        try:
            objects.patch_namespaced_custom_object_status(
                *where, {"status": written}, _content_type=MERGE_PATCH
            )
            objects.patch_namespaced_custom_object(*where, take_off, _content_type=JSON_PATCH)
        except kubernetes.client.ApiException as exc:
            if not (is_not_found(exc) or is_invalid(exc)):
                raise

    def fresh(self, request: StackRequest) -> StackRequest:
        """The request with the Stack's status and annotations as read from the API now
        (the handler's copy may be stale: an annotation consumed already, for one)."""
        try:
            body = kubernetes.client.CustomObjectsApi(
                self.namespaces.api
            ).get_namespaced_custom_object(GROUP, VERSION, request.namespace, STACKS, request.name)
        except kubernetes.client.ApiException as exc:
            if is_not_found(exc):
                return request
            raise
        fresh = StackRequest.of(cast(Mapping[str, Any], body))
        return replace(request, status=fresh.status, annotations=fresh.annotations)

    def _start_traversal(
        self,
        engine: Engine,
        request: StackRequest,
        patch: MutableMapping[str, Any],
        notify: Notify,
        retry: str | None = None,
    ) -> None:
        """Create or update the stack to its spec, parametersFrom included (again for the
        retry request `retry`, of the same generation)."""
        spec, generation = request.spec, request.generation
        try:
            parameters = merged_parameters(
                spec.parameters,
                spec.parameters_from,
                lambda kind, source: self.read_source(
                    request.namespace, spec.service_account_name, kind, source
                ),
            )
            files = merged_files(
                spec.files,
                spec.files_from,
                lambda kind, source: self.read_source(
                    request.namespace, spec.service_account_name, kind, source, "filesFrom"
                ),
            )
        except ParametersUnavailable as exc:
            message = str(exc)
            if request.status.get("statusReason") != message:
                notify("Warning", exc.reason, message)
            patch.update(not_started(request.status, generation, exc.reason, message))
            raise Requeue(message, PARAMETERS_RETRY_DELAY) from exc
        created = engine.store.get_stack(request.name) is not None
        start = operations.update_stack if created else operations.create_stack
        try:
            started = start(
                engine,
                request.name,
                dict(spec.template or {}),
                parameters,
                disable_rollback=spec.disable_rollback,
                timeout=spec.timeout,
                environment=spec.environment,
                files=files,
                # Every replica hears of the new generation (or retry): it is started once.
                desired=str(generation) if retry is None else f"{generation} retry {retry}",
            )
        except TemplateError as exc:
            # TemplateError messages never carry a hidden parameter's value (the engine masks it).
            notify("Warning", "InvalidTemplate", str(exc))
            patch["observedGeneration"] = generation
            patch.update(not_started(request.status, generation, "InvalidTemplate", str(exc)))
            if not created:
                # As Heat says of a stack its engine refused (`stack list` shows
                # CREATE_FAILED); the engine has no record of it, so nothing reads this
                # phase but people (kubectl get's STATUS column). A stack that exists
                # keeps its phase: its resources are as they were.
                patch["phase"] = f"{CREATE}_{FAILED}"
            raise Rejected(f"invalid template: {exc}") from exc
        except operations.OperationRefused as exc:
            _refuse(patch, notify, str(exc))
            patch["observedGeneration"] = generation
            return
        patch["observedGeneration"] = generation
        logger.info(
            "%s of generation %s started",
            started.action,
            generation,
            extra={"traversal": started.traversal},
        )
        notify("Normal", "StackUpdate", f"Converging to generation {generation}")

    def _cancel(
        self,
        engine: Engine,
        name: str,
        value: str,
        patch: MutableMapping[str, Any],
        notify: Notify,
    ) -> None:
        """Carry out a cancel request."""
        if value not in CANCEL_VALUES:
            _refuse(patch, notify, f"{CANCEL.annotation} must be one of {', '.join(CANCEL_VALUES)}")
            return
        try:
            operations.cancel_update(engine, name, rollback=value == "rollback")
        except (operations.OperationRefused, operations.StackNotFound) as exc:
            _refuse(patch, notify, str(exc))
            return
        notify("Normal", "CancelRequested", f"Cancel ({value}) of the operation")

    def _rollback(
        self, engine: Engine, name: str, patch: MutableMapping[str, Any], notify: Notify
    ) -> None:
        """Carry out a rollback request."""
        stack = engine.store.get_stack(name)
        try:
            if stack is None:
                raise operations.OperationRefused(f"Stack {name} has not been created")
            if stack.action == DELETE:
                raise operations.OperationRefused(f"Cannot roll back when stack is {stack.phase}")
            operations.rollback_stack(engine, name)
        except operations.OperationRefused as exc:
            _refuse(patch, notify, str(exc))
            return
        notify("Normal", "RollbackRequested", "Rolling back to the last good template")

    def read_source(
        self,
        namespace: str,
        service_account: str | None,
        kind: str,
        name: str,
        field: str = "parametersFrom",
    ) -> Mapping[str, str] | None:
        """The string data of a ConfigMap or Secret named by spec.parametersFrom or
        spec.filesFrom (`field`; None: absent), read as the stack's identity
        (`kube/sources.py`)."""
        return self.namespaces.sources(namespace).read(service_account, kind, name, field)

    # -- delete, timeouts -------------------------------------------------------------------------

    def delete(self, namespace: str, name: str) -> None:
        """Converge to the empty template; Requeue until that is complete."""
        engine = self.namespaces.engine(namespace)
        record = engine.store.get_stack(name)
        if record is None:
            return
        if record.action != DELETE:
            operations.delete_stack(engine, name)
            raise Requeue("deleting the stack's resources", 1)
        if record.phase != "DELETE_COMPLETE":
            raise Requeue(f"stack is {record.phase}", 2)
        left = engine.store.list_resources(name)
        if left:
            # A step that pushed its delete on and then died (or a replica killed there)
            # left its record: the last node's push may complete the stack before the
            # record goes. The record's own step finishes it while the Stack is there.
            for leftover in left:
                engine.dispatcher.trigger(
                    NodeMessage(name, record.traversal, cleanup_node(leftover.id))
                )
            raise Requeue(f"{len(left)} StackResource(s) still being deleted", 2)
        # Its template revisions (and their values' Secrets) and traversal graphs
        # go now, not whenever the garbage collector gets to what the Stack owned.
        store = self.namespaces.store(namespace)
        store.revisions.prune(name, set(), 0)
        store.graphs.drop_all(name)

    def check_timeout(self, namespace: str, name: str) -> None:
        """A stack whose workers are all idle still notices its deadline (and a lost rollback)."""
        engine = self.namespaces.engine(namespace)
        operations.check_timeout(engine, name)
        operations.resume_lost_rollback(engine, name)

    # -- reports ----------------------------------------------------------------------------------

    def observe(self, namespace: str, body: Mapping[str, Any], deleted: bool) -> None:
        """A Stack's watch event: remember it, and bring its conditions and counts up to date."""
        cache = self.namespaces.cache(namespace)
        if deleted:
            cache.forget(STACKS, body)
            self.namespaces.stack_gone(namespace, str(body["metadata"]["name"]))
            return
        cache.observe(STACKS, body)
        name = str(body["metadata"]["name"])
        status = status_of(body)
        if status.get("phase") and status.get("reportedPhase") != (
            f"{status.get('phase')}/{status.get('traversal')}"
        ):
            # A new phase is reported at once (its Event, the traversal metrics).
            self.report(namespace, name)
        else:
            # Otherwise scheduled: a report's own write is a Stack event, so reporting on
            # every event rewrote a converging Stack as fast as the API took the writes.
            self.namespaces.schedule_report(namespace, name)
        self.status.report_passed_failure(namespace, body)

    def report(self, namespace: str, name: str) -> None:
        """Conditions and counts of a Stack; an Event and traversal metrics for a new phase.

        Both come from the cache (counts are a report, not a decision); a newer
        Stack than the cached one makes the write fail, and its event reports again.
        """
        engine = self.namespaces.engine(namespace)
        cache = self.namespaces.cache(namespace)
        body = cache.get(STACKS, name)
        stack = engine.store.get_stack(name)
        if body is None or stack is None or not stack.traversal:
            return
        with logs.context(namespace=namespace, stack=name, traversal=stack.traversal):
            report = stack_report(body, stack, cache.resources_of(name))
            if report.new_phase and stack.status in (COMPLETE, FAILED) and stack.action != DELETE:
                # Before the report, so that a reported phase means the revisions are tended
                # too (marking and pruning are idempotent: a refused report does them again).
                self.tend_revisions(namespace, stack, StackSpec.of(body))
            self.status.write_stack(namespace, body, stack, report)

    def tend_revisions(self, namespace: str, stack: StackRecord, spec: StackSpec) -> None:
        """Mark the last completed template revision; prune beyond spec.revisionHistoryLimit.

        Kept whatever the limit: the current and last completed revisions and
        every revision a record's state or action in flight refers to.
        """
        store = self.namespaces.store(namespace)
        keep = {r for r in (stack.template, stack.prev_template) if r is not None}
        for record in store.list_resources(stack.name):
            keep.update(r for r in (record.template,) if r is not None)
            if record.pending is not None and record.pending.template is not None:
                keep.add(record.pending.template)
        try:
            pruned = store.revisions.prune(stack.name, keep, spec.revision_history_limit)
            if pruned:
                logger.info("stack %s: pruned %d old template revisions", stack.name, len(pruned))
        except (kubernetes.client.ApiException, NotFound) as exc:
            logger.warning("could not prune the revisions of stack %s: %s", stack.name, exc)
        try:
            store.revisions.mark_last_completed(stack.name, stack.prev_template)
        except (kubernetes.client.ApiException, NotFound) as exc:
            logger.warning("could not mark the last completed revision of %s: %s", stack.name, exc)


def _refuse(patch: MutableMapping[str, Any], notify: Notify, message: str) -> None:
    notify("Warning", "OperationRefused", message)
    patch["statusReason"] = f"Operation refused: {message}"
