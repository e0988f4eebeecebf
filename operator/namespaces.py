"""What the operator keeps per namespace, and the one work queue its engine steps run from.

The store is namespaced, so each namespace the operator serves gets its own
Engine (Kubernetes store, reality, objects, secrets) and its own ObjectCache of
what the watch streams and the operator's writes told of its Stacks and
StackResources.

The work queue holds two kinds of request, both named by a `RecordKey`:
(namespace, stack, record id) runs the nodes of one record (the engine's
dispatcher adds these, as do the watch events); the record id `REPORT` asks
for a report of the stack's conditions and counts instead, batched over
`REPORT_DELAY` so that a burst of phase changes is reported once, and over
longer (`REPORT_COST_SHARE`) when the stack's last report took long: a report
reads every record of the stack and rewrites its Stack, so a large stack's
report is costly, and it is for people, not for any decision.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import kubernetes

from convergence.operator.engine.definitions import template_definitions
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.plugin import TypeRegistry
from convergence.operator.engine.wiring import Engine
from convergence.operator.kube.api import is_unavailable
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.names import STACK_RESOURCES
from convergence.operator.kube.nested import KubernetesStacks
from convergence.operator.kube.objects import KubernetesObjects
from convergence.operator.kube.reality import ConfigMapReality
from convergence.operator.kube.records import status_of
from convergence.operator.kube.replicas import ReplicaLeases
from convergence.operator.kube.secrets import KubernetesSecretStore
from convergence.operator.kube.sources import ParameterSources
from convergence.operator.kube.store import KubernetesStore
from convergence.operator.workqueue import WorkQueue

# (namespace, stack, record id); with the record id REPORT, a report of the stack.
RecordKey = tuple[str, str, str]
REPORT = ""
# Seconds a stack's report waits for more StackResource phase changes to batch up.
REPORT_DELAY = 1.0
# ...at least this many times as long as its last report took (at most 1/10 of the time
# goes to reporting a stack: measured 0.35 s per report of a 1000-resource stack).
REPORT_COST_SHARE = 10.0


class QueueDispatcher:
    """The engine's Dispatcher: a node message wakes its record in the work queue."""

    def __init__(self, namespace: str, queue: WorkQueue[RecordKey]) -> None:
        self.namespace = namespace
        self.queue = queue

    def trigger(self, message: NodeMessage) -> None:
        self.queue.add((self.namespace, message.stack, message.node.record_id))


class Namespaces:
    """One Engine and one ObjectCache per namespace, made when first asked for; the queue."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        types: TypeRegistry,
        *,
        require_service_account: bool = False,
        replicas: ReplicaLeases | None = None,
    ) -> None:
        self.api = api
        # Who this replica is, and which others are alive (None: this one alone).
        self.replicas = replicas
        self.types = types
        # Multi-tenant mode: a Stack must name a ServiceAccount to act as.
        self.require_service_account = require_service_account
        self.queue: WorkQueue[RecordKey] = WorkQueue()
        self._engines: dict[str, Engine] = {}
        self._stores: dict[str, KubernetesStore] = {}
        self._sources: dict[str, ParameterSources] = {}
        self._caches: dict[str, ObjectCache] = {}
        self._reports_due: set[RecordKey] = set()
        # Seconds the last report of each stack took.
        self._report_costs: dict[RecordKey, float] = {}
        self._reports_lock = threading.Lock()

    def wake_held_by(self, holder: str) -> int:
        """Wake every known record whose action `holder` (a replica) holds; how many."""
        woken = 0
        for namespace, cache in list(self._caches.items()):
            for body in cache.bodies(STACK_RESOURCES):
                stack = body.get("spec", {}).get("stack")
                if stack and status_of(body).get("lockHolder") == holder:
                    self.queue.add((namespace, stack, body["metadata"]["name"]))
                    woken += 1
        return woken

    def cache(self, namespace: str) -> ObjectCache:
        """What the watch streams and our writes told of the namespace's Stacks and resources."""
        return self._caches.setdefault(namespace, ObjectCache())

    def engine(self, namespace: str) -> Engine:
        """The engine of the namespace's stacks."""
        if namespace not in self._engines:
            cache = self.cache(namespace)
            store = self._stores[namespace] = KubernetesStore(self.api, namespace, cache)
            objects = KubernetesObjects(self.api, namespace, self.require_service_account)
            self._sources[namespace] = ParameterSources(objects)
            self._engines[namespace] = Engine(
                store=store,
                types=self.types,
                reality=ConfigMapReality(self.api, namespace, cache),
                dispatcher=QueueDispatcher(namespace, self.queue),
                objects=objects,
                secrets=KubernetesSecretStore(self.api, namespace),
                stacks=KubernetesStacks(self.api, namespace, store),
                definitions=functools.partial(template_definitions, project_id=namespace),
                transient=is_unavailable,
                **self._replica(),
            )
        return self._engines[namespace]

    def _replica(self) -> dict[str, Any]:
        """The Engine's fields saying which replica this is and which others are alive."""
        if self.replicas is None:
            return {}
        return {
            "engine_id": self.replicas.identity,
            "alive": self.replicas.alive,
            "fence": self.replicas.fence,
            "resumed": self.replicas.resumed,
        }

    def store(self, namespace: str) -> KubernetesStore:
        """The namespace's store (its graphs and revisions beyond the engine's Store)."""
        self.engine(namespace)
        return self._stores[namespace]

    def sources(self, namespace: str) -> ParameterSources:
        """The namespace's parametersFrom sources, read as each stack's identity."""
        self.engine(namespace)
        return self._sources[namespace]

    def schedule_report(self, namespace: str, stack: str) -> None:
        """Report the stack's counts soon, once for all the changes until then."""
        key = (namespace, stack, REPORT)
        with self._reports_lock:
            if key in self._reports_due:
                return
            self._reports_due.add(key)
            delay = max(REPORT_DELAY, REPORT_COST_SHARE * self._report_costs.get(key, 0.0))
        self.queue.add_after(key, delay)

    def report_taken(self, key: RecordKey) -> None:
        """The report `key` is being made: a change from now on schedules another."""
        with self._reports_lock:
            self._reports_due.discard(key)

    def report_made(self, key: RecordKey, seconds: float) -> None:
        """The report `key` took `seconds`: the next waits accordingly."""
        with self._reports_lock:
            self._report_costs[key] = seconds

    def stack_gone(self, namespace: str, stack: str) -> None:
        """Forget what was kept for reports of a stack that is gone."""
        with self._reports_lock:
            self._report_costs.pop((namespace, stack, REPORT), None)
