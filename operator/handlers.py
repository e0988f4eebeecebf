"""The kopf shell: which kopf cause reaches which controller, and nothing more.

One idempotent handler per cause and kind hands the object to its controller
(operator/controllers/), which reads the whole current state: kopf runs one
handler per cycle and does not replay a change that lands mid-cycle to
handlers that already succeeded, so routing lives in the controllers, not in
kopf. The shell turns a controller's `Requeue` and `Rejected` into kopf's
temporary and permanent errors, binds its Events to kopf's poster, and counts
each call as a reconciliation.

`run(settings)` is the whole process: kopf with these handlers, and at
startup the `App` built from the same Settings (kept in kopf's `memo`, which
every handler is given). With `settings.webhook_port`, kopf's webhook server
also serves the validating admission webhook of Stacks at
`https://HOST:PORT/validate-stack` (controllers/admission.py); the webhook
configuration that sends requests there is the chart's, or a test's, never
kopf's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

import kopf

from convergence.operator import logs, metrics
from convergence.operator.app import App, Settings, api_client
from convergence.operator.controllers import Notify, Rejected, Requeue
from convergence.operator.controllers.admission import StackAdmission
from convergence.operator.controllers.preview import PreviewRequest
from convergence.operator.controllers.stack import StackRequest
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.kube.names import GROUP, STACK_PREVIEWS, STACKS, VERSION

KOPF_PREFIX = f"kopf.{GROUP}"
# Seconds between deadline checks of a stack whose workers are all idle.
TIMEOUT_CHECK_INTERVAL = 30
# The admission handler's id, which kopf's webhook server takes as the URL path.
VALIDATE_STACK = "validate-stack"
# Seconds a Stack's delete handler looks again, in this process, before it hands the
# wait back to kopf (see delete_stack).
DELETE_WAIT = 30.0


def run(settings: Settings) -> None:
    """Run the operator until it is stopped."""
    kopf.run(
        registry=registry(settings),
        # One registry of resource types for the App and the admission check.
        memo=kopf.Memo(settings=settings, types=TypeRegistry.from_entry_points()),
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=settings.liveness or None,
        standalone=True,
    )


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's record of the last spec handled, kept as a digest of it.

    kopf keeps the whole essence (the spec, so the template) in an annotation,
    and a Stack's annotations may hold 256 KiB in all: a template of a few
    thousand resources made every patch of kopf's Invalid, and its finalizer
    was never released (the Stack stayed deleting). The handlers never read
    kopf's diff, old or new, only whether something changed, which the digest
    tells as well. A record kept whole by an older version differs from any
    digest: its Stack is handled once more (a no-op when it is converged).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields:
            essence = super().build(body=body, extra_fields=extra_fields)
        else:
            # kopf's essence is the spec and the labels and annotations kept. It
            # deep-copies the whole body to make it, status and template included: at
            # 1000 resources 0.3 s per Stack event under cProfile, 25 s of the 194 s of
            # create, update and delete, the largest of the operator's own costs. Only
            # the metadata is handed to kopf here; the spec is only serialized, so it
            # needs no copy. The essence (so the digest) is the one of the whole body.
            metadata_only = {k: v for k, v in body.items() if k not in ("spec", "status")}
            essence = super().build(body=kopf.Body(cast(kopf.RawBody, metadata_only)))
            if "spec" in body:
                essence = cast(kopf.BodyEssence, {**essence, "spec": body["spec"]})
        encoded = json.dumps(essence, sort_keys=True, separators=(",", ":")).encode()
        return cast(kopf.BodyEssence, {"sha256": hashlib.sha256(encoded).hexdigest()})


def registry(settings: Settings) -> kopf.OperatorRegistry:
    """Every handler below, registered for `settings` (the drift check's interval)."""
    registry = kopf.OperatorRegistry()
    stacks = (GROUP, VERSION, STACKS)
    # kopf's default registry logs in with the Kubernetes client's configuration
    # ($KUBECONFIG or the pod's ServiceAccount); an explicit registry says so itself.
    kopf.on.login(registry=registry, errors=kopf.ErrorsMode.IGNORED)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    for cause in (kopf.on.resume, kopf.on.create, kopf.on.update):
        cause(*stacks, registry=registry)(reconcile_stack)
    kopf.on.delete(*stacks, registry=registry)(delete_stack)
    kopf.on.event(*stacks, registry=registry)(stack_changed)
    kopf.timer(
        *stacks, interval=TIMEOUT_CHECK_INTERVAL, idle=TIMEOUT_CHECK_INTERVAL, registry=registry
    )(check_timeout)
    drift = settings.drift_interval
    kopf.timer(*stacks, interval=drift, idle=drift, registry=registry)(check_drift)
    previews = (GROUP, VERSION, STACK_PREVIEWS)
    for cause in (kopf.on.resume, kopf.on.create, kopf.on.update):
        cause(*previews, registry=registry)(preview_stack)
    if settings.webhook_port:
        kopf.on.validate(
            *stacks, id=VALIDATE_STACK, operations=["CREATE", "UPDATE"], registry=registry
        )(validate_stack)
    return registry


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Set kopf up, then build and start the App (before any watch starts)."""
    settings.persistence.finalizer = f"{GROUP}/stack-cleanup"
    # kopf leaves every annotation under its storage prefix out of what it compares, so
    # its own annotations live under a sub-domain and the user's convergence.dev/cancel
    # and convergence.dev/rollback still fire the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "convergence"
    settings.posting.event_name_prefix = "convergence-"
    settings.watching.server_timeout = 300
    config: Settings = memo.settings
    # Namespaces given by name are watched as given. kopf's scan of namespaces leaves out
    # one that is being deleted when it starts, so an operator started after its namespace's
    # deletion began would never release the Stacks' finalizers: the namespace would stay
    # Terminating for ever. (Not scanning also means CRDs are discovered once, at startup.)
    settings.scanning.disabled = bool(config.namespaces)
    if config.webhook_port:
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_address,
            port=config.webhook_port,
            certfile=config.webhook_cert,
            pkeyfile=config.webhook_key,
        )
        # The webhook configuration is installed by the chart (or a test), not by kopf.
        settings.admission.managed = None
    app = App(config, api_client(), memo.types)
    app.start()
    memo.app = app


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """The operator is stopping gracefully: let the other replicas take over at once."""
    app = memo.get("app")
    if isinstance(app, App):
        await asyncio.to_thread(app.stop)


def validate_stack(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Refuse a Stack whose template the engine would refuse (controllers/admission.py);
    kopf gives `operation` and, on UPDATE, the `old` body."""
    types = memo.get("types")
    assert isinstance(types, TypeRegistry), "run() puts the resource types in the memo"
    try:
        StackAdmission(types).review(str(kwargs.get("operation") or ""), body, kwargs.get("old"))
    except Rejected as exc:
        # 422 Unprocessable Entity, as the API server's own validation answers.
        raise kopf.AdmissionError(str(exc), code=422) from exc


def reconcile_stack(
    name: str, namespace: str | None, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    """Start a traversal for a spec not converged to yet; carry out new cancel/rollback requests."""
    assert namespace is not None, "Stack is namespaced"
    app = _app(memo)
    with _reconciling(app, metrics.STACK, namespace, name):
        app.stacks.reconcile(StackRequest.of(body), patch.status, _notify(body))


async def delete_stack(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Converge to the empty template; hold the finalizer until that is complete.

    The controller says when to look again (its Requeue) until the delete is
    complete. Handed to kopf, each such retry costs two writes of the whole
    Stack, template included: kopf stores the retry in it, then touches it
    when the delay is over. Deleting 10 stacks of 300 resources that was 1360
    Stack patches, 388 s of the API server's time (bench_operator.py
    --spread); 58 now. So the handler looks again itself, from what this process
    knows, for up to `DELETE_WAIT`, and only then hands the retry to kopf.
    Meanwhile kopf handles no other event of this Stack (they wait, batched);
    the engine's own writes keep the Stack this process knows current, and
    what another replica wrote is seen once the wait is handed back.
    """
    assert namespace is not None, "Stack is namespaced"
    app = _app(memo)
    loop = asyncio.get_running_loop()
    handed_back = loop.time() + DELETE_WAIT

    def look() -> None:
        with _reconciling(app, metrics.STACK, namespace, name):
            app.stacks.delete(namespace, name)

    while True:
        try:
            await asyncio.to_thread(look)
            return
        except kopf.TemporaryError as exc:
            delay = float(exc.delay or 0)
            if loop.time() + delay > handed_back:
                raise
            await asyncio.sleep(delay)


def stack_changed(
    body: kopf.Body, namespace: str | None, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A Stack's engine status changed: bring its conditions and counts up to date."""
    app = memo.get("app")
    if isinstance(app, App) and namespace is not None:
        app.stacks.observe(namespace, body, deleted=type == "DELETED")


def check_timeout(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A stack whose workers are all idle still notices its deadline (and a lost rollback)."""
    if namespace is not None:
        _app(memo).stacks.check_timeout(namespace, name)


def check_drift(
    name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Put back what someone else changed in a stack at rest (see controllers/drift.py)."""
    if namespace is not None:
        _app(memo).drift.check(namespace, name, body)


def preview_stack(
    name: str, namespace: str | None, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    """Answer a StackPreview's new generation in its status (see controllers/preview.py)."""
    assert namespace is not None, "StackPreview is namespaced"
    app = _app(memo)
    with _reconciling(app, metrics.STACK_PREVIEW, namespace, name):
        app.previews.reconcile(PreviewRequest.of(body), patch.status)


def _app(memo: Mapping[str, Any]) -> App:
    app = memo.get("app")
    if not isinstance(app, App):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return app


def _notify(body: kopf.Body) -> Notify:
    """Events about `body`, posted by kopf (as its handlers' own are)."""

    def notify(type_: str, reason: str, message: str) -> None:
        if type_ == "Warning":
            kopf.warn(body, reason=reason, message=message)
        else:
            kopf.info(body, reason=reason, message=message)

    return notify


@contextlib.contextmanager
def _reconciling(app: App, controller: str, namespace: str, name: str) -> Iterator[None]:
    """One handler call: logged as about `name`, counted as a reconciliation of `controller`,
    and a controller's Requeue or Rejected made kopf's temporary or permanent error."""
    active = app.metrics.active_workers.labels(controller)
    active.inc()
    started = time.monotonic()
    error, again = False, None
    try:
        with logs.context(namespace=namespace, stack=name):
            yield
    except Requeue as exc:
        again = exc.delay
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except Rejected as exc:
        error = True
        raise kopf.PermanentError(str(exc)) from exc
    except Exception:
        error = True
        raise
    finally:
        active.dec()
        app.metrics.observe_reconcile(
            controller,
            metrics.reconcile_result(error=error, requeue_after=again),
            time.monotonic() - started,
        )
