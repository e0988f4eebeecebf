"""The operator process: its Settings, and the App that wires its controllers together.

`convergence run` (cli.py) builds one `Settings`; kopf's startup handler
builds the `App` from it: the Kubernetes client, the per-namespace engines and
caches with the one work queue (namespaces.py), the status writer, the four
controllers, the watch of StackResources (kube/watch.py: kopf watches only
Stacks and StackPreviews), the metrics and their HTTP endpoint. The work queue's requests
are routed here: a record's nodes to the StackResource controller, a stack
report to the Stack controller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kubernetes
import prometheus_client

from convergence.operator import logs, metrics
from convergence.operator.controllers.drift import DriftController
from convergence.operator.controllers.preview import PreviewController
from convergence.operator.controllers.stack import StackController
from convergence.operator.controllers.stackresource import StackResourceController
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.store import Conflict
from convergence.operator.kube.api import FencedApiClient, is_unavailable
from convergence.operator.kube.events import EventPoster
from convergence.operator.kube.replicas import LEASE_DURATION, ReplicaLeases
from convergence.operator.kube.watch import RecordWatch
from convergence.operator.namespaces import REPORT, Namespaces, RecordKey
from convergence.operator.status import Status

# HTTP connections kept to the API server.
CONNECTIONS = 32
# Seconds before a request whose run raised is run again; doubled at each failure in a row,
# up to RETRY_AFTER_ERROR_MAX.
RETRY_AFTER_ERROR = 2.0
RETRY_AFTER_ERROR_MAX = 60.0
# The longest delay while the API cannot answer: it is back soon, and then so is the step.
RETRY_AFTER_UNAVAILABLE_MAX = 8.0
# Failures in a row of one record's step after which it is reported on the StackResource.
REPORT_FAILURES_AFTER = 3


def retry_delay(failures: int) -> float:
    """Seconds before the next try of a step that failed `failures` times in a row."""
    return min(RETRY_AFTER_ERROR * 2.0 ** max(failures - 1, 0), RETRY_AFTER_ERROR_MAX)


logger = logging.getLogger("convergence.operator")


@dataclass(frozen=True)
class Settings:
    """How the operator runs: built once, by `convergence run`."""

    # Namespaces to watch (empty: every namespace).
    namespaces: tuple[str, ...] = ()
    # kopf's liveness endpoint URL (empty: none).
    liveness: str = ""
    # Port of the Prometheus /metrics endpoint (0: none).
    metrics_port: int = 0
    # Multi-tenant mode: every Stack must name a ServiceAccount to act as.
    require_service_account: bool = False
    # Work-queue workers running engine steps at once (mostly waiting on the API).
    workers: int = 16
    # Seconds between drift checks of a stack at rest.
    drift_interval: float = 30.0
    # Port of the Stack validating webhook (HTTPS; 0: none), where it listens, and its
    # serving certificate and key (PEM files, reloaded when they change).
    webhook_port: int = 0
    webhook_address: str = "0.0.0.0"
    webhook_cert: str = ""
    webhook_key: str = ""
    # This replica's identity, and the namespace of the replicas' Leases (kube/replicas.py).
    identity: str = "convergence"
    lease_namespace: str = "default"
    # Seconds without a renewal of its Lease after which a replica is dead.
    lease_seconds: float = LEASE_DURATION


def api_client() -> kubernetes.client.ApiClient:
    """A client for the cluster of $KUBECONFIG, else of the pod the operator runs in.

    Its connection pool holds `CONNECTIONS`: the work queue's workers, record
    creation and the watches all use it at once, and the client's default
    (5 per core) would open and drop connections under that load. A step's writes
    leave through it checked against the step's fence (kube/api.py, `FencedApiClient`).
    """
    configuration = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    else:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    configuration.connection_pool_maxsize = CONNECTIONS
    return FencedApiClient(configuration)


class App:
    """One operator process: the controllers over one set of namespaces, queue and metrics."""

    def __init__(
        self, settings: Settings, api: kubernetes.client.ApiClient, types: TypeRegistry
    ) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics()
        self.replicas = ReplicaLeases(
            api,
            settings.lease_namespace,
            settings.identity,
            duration=settings.lease_seconds,
            interval=settings.lease_seconds / 3,
            # Its records hear of nothing else: their steps take its actions over.
            on_dead=lambda holder: self.namespaces.wake_held_by(holder),
        )
        self.namespaces = Namespaces(
            api,
            types,
            require_service_account=settings.require_service_account,
            replicas=self.replicas,
        )
        events = EventPoster(api)
        self.status = Status(self.namespaces, events, self.metrics)
        self.stacks = StackController(self.namespaces, self.status)
        self.stack_resources = StackResourceController(
            self.namespaces, self.status, events, self.metrics
        )
        self.drift = DriftController(self.namespaces, self.status, events)
        self.previews = PreviewController(self.namespaces)
        self.metrics.watch_queue_depth(metrics.STACK_RESOURCE, lambda: len(self.namespaces.queue))
        self._queue_task: asyncio.Task[None] | None = None
        # Failures in a row of each record's step (the work queue runs a key once at a time).
        self._failures: dict[RecordKey, int] = {}
        # StackResources are watched here, not by kopf (see kube/watch.py).
        self.record_watches = [
            RecordWatch(api, namespace, self.stack_resources.observe)
            for namespace in (settings.namespaces or (None,))
        ]

    def start(self) -> None:
        """Serve /metrics, watch StackResources and run the work queue's workers (on the
        running event loop)."""
        port = self.settings.metrics_port
        if port:
            try:
                prometheus_client.start_http_server(port, registry=self.metrics.registry)
                logger.info("metrics on :%d/metrics", port)
            except OSError as exc:
                # Metrics are for watching the operator; they never stop it from working.
                logger.error("no metrics: cannot listen on port %d: %s", port, exc)

        async def process(key: RecordKey) -> float | None:
            return await asyncio.to_thread(self.process, key)

        loop = asyncio.get_running_loop()
        # The watches below add from their own threads at once.
        self.namespaces.queue.attach(loop)
        # Each worker runs its steps on a thread of the loop's default executor,
        # whose own default size (cores + 4) would cap them below `workers`.
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="step")
        )
        self._queue_task = loop.create_task(
            self.namespaces.queue.run(process, self.settings.workers)
        )
        # Alive to the other replicas before the first step takes a lock.
        self.replicas.start()
        for watch in self.record_watches:
            watch.start()

    def _report_failing(self, key: RecordKey, exc: Exception) -> None:
        """Say on the StackResource why its step keeps failing (never raises).

        The message names the error only, never how many times or when next: it is
        written once per error, since each write wakes the record again.
        """
        message = (
            f"the step keeps failing (retried with a growing delay): {type(exc).__name__}: {exc}"
        )
        try:
            self.status.report_step_error(key[0], key[2], message[:1024])
        except Exception as report_error:
            logger.warning("could not report the failing step of %s: %s", key[2], report_error)

    def _recovered(self, key: RecordKey) -> None:
        """A step that ran after failures: its reported error goes."""
        failures = self._failures.pop(key, 0)
        if failures >= REPORT_FAILURES_AFTER:
            try:
                self.status.report_step_error(key[0], key[2], None)
            except Exception as report_error:
                logger.warning("could not clear the step error of %s: %s", key[2], report_error)

    def stop(self) -> None:
        """A graceful end: the other replicas may take over this one's actions at once."""
        self.replicas.stop()

    def process(self, key: RecordKey) -> float | None:
        """One request from the work queue, counted; returns when to run it again."""
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
                # A report is no reconciliation of a record: only a failed one is counted.
                self.namespaces.report_taken(key)
                self.stacks.report(key[0], key[1])
                self.namespaces.report_made(key, time.monotonic() - started)
                return None
            again = self.stack_resources.step(key)
            self._recovered(key)
        except Conflict:
            again = 0.0
        except Exception as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            error, again = True, retry_delay(failures)
            if is_unavailable(exc):
                # The API server or etcd is down for a moment: no failure of anything.
                again = min(again, RETRY_AFTER_UNAVAILABLE_MAX)
                logger.warning(
                    "step of %s: the API could not answer (%s); retrying in %gs",
                    "/".join(key),
                    exc,
                    again,
                )
            elif failures == 1:
                logger.exception("step of %s failed; retrying in %gs", "/".join(key), again)
            else:
                # The traceback was logged at the first failure of the run.
                logger.error(
                    "step of %s failed %d times in a row (%s: %s); retrying in %gs",
                    "/".join(key),
                    failures,
                    type(exc).__name__,
                    exc,
                    again,
                )
            if failures >= REPORT_FAILURES_AFTER and not is_unavailable(exc):
                self._report_failing(key, exc)
        finally:
            active.dec()
        self.metrics.observe_reconcile(
            metrics.STACK_RESOURCE,
            metrics.reconcile_result(error=error, requeue_after=again),
            time.monotonic() - started,
        )
        return again
