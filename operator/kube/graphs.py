"""The ConfigMaps of a traversal: its graph, and its stack-complete sync point.

A traversal's graph never changes (a new graph comes with a new traversal
id), and it is as large as the stack: kept in the Stack's status, every write
and watch event of the Stack would carry it. So it has a ConfigMap of its
own, `graph-<traversal>`, immutable, written once before the traversal starts
and read once per process (`data.graph` = {node key: [node keys it waits
for]}); the Stack's `status.graphRef` names it.

Made with it is the traversal's stack-complete sync point, `sync-<traversal>`:
the roots push there, not to the Stack's status, so the Stack stays small and
is written once per root less (every Stack write is a watch event that kopf
copies whole). Its `data` maps each root's node key (":" spelled "_", which a
ConfigMap key cannot hold) to its entry as JSON; each push is one JSON patch
`add` of the sender's key. A push that finds no such map (a traversal older
than this code, or a namespace being deleted) goes to the Stack's status.

Both are owned by the Stack and labelled with it and `convergence.dev/graph`,
and both go when a newer traversal is stored or the Stack is deleted.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client import V1ConfigMap, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.graph import Graph
from convergence.operator.engine.plugin import STACK_LABEL, label_value
from convergence.operator.engine.store import StoreError, SyncEntry
from convergence.operator.kube.api import (
    GRAPH_WRITE,
    JSON_PATCH,
    STACK_PUSH,
    ApiNotFound,
    NamespacedApi,
    if_present,
    is_conflict,
    is_namespace_terminating,
    request,
    unless_absent,
)
from convergence.operator.kube.joined_reads import JoinedReads
from convergence.operator.kube.names import GROUP, is_object_name
from convergence.operator.kube.records import (
    graph_from_status,
    graph_to_status,
    sync_entry_from_status,
    sync_entry_to_status,
)

GRAPH_PREFIX = "graph-"
# An object's metadata without the rest (a PartialObjectMetadata).
METADATA_ONLY = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
GRAPH_LABEL = f"{GROUP}/graph"
SYNC_PREFIX = "sync-"
SYNC_TRAVERSAL_KEY = "traversal"
SYNC_KINDS = ("update", "cleanup")
# Graphs kept parsed in memory (a few stacks' current ones).
GRAPHS_KEPT = 64


class GraphGone(StoreError):
    """The ConfigMap holding a traversal's graph does not exist."""


def graph_name(traversal: str) -> str:
    """The name of the ConfigMap holding the graph of `traversal`."""
    return f"{GRAPH_PREFIX}{traversal}"


def sync_map_name(traversal: str) -> str:
    """The name of the ConfigMap holding the stack-complete sync point of `traversal`."""
    return f"{SYNC_PREFIX}{traversal}"


def sync_map_key(sender: str) -> str | None:
    """A node key ("update:<id>") as a ConfigMap data key; None if it cannot be one."""
    kind, _, record_id = sender.partition(":")
    key = f"{kind}_{record_id}"
    if kind not in SYNC_KINDS or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        return None
    return key


def sender_of_sync_map_key(key: str) -> str | None:
    """Inverse of sync_map_key(); None for the map's other keys."""
    kind, _, record_id = key.partition("_")
    return f"{kind}:{record_id}" if kind in SYNC_KINDS and record_id else None


@dataclass(frozen=True)
class _SyncMap:
    """A sync map as last seen: its version, its entries, and each entry's text."""

    version: int
    entries: dict[str, SyncEntry]
    raws: dict[str, str]


class TraversalGraphs:
    """Traversal graphs and stack sync maps in one namespace, the newest known kept in memory."""

    def __init__(self, api: NamespacedApi) -> None:
        self._api = api
        self._lock = threading.Lock()
        # Graphs by ConfigMap name (they never change), the newest last.
        self._graphs: dict[str, Graph] = {}
        # Sync map name -> the newest seen.
        self._sync_maps: dict[str, _SyncMap] = {}
        # Sync map name -> the lock this process's pushes into it take turns on.
        self._push_locks: dict[str, threading.Lock] = {}
        # Steps asking at once whether a sync map exists share one read of it.
        self.fence_reads: JoinedReads[str, bool] = JoinedReads(self._sync_map_exists_now)

    # -- graphs --------------------------------------------------------------------------------

    def graph(self, name: str) -> Graph:
        """The graph in the ConfigMap `name`; GraphGone if there is none."""
        with self._lock:
            known = self._graphs.get(name)
        if known is not None:
            return known
        config_map = if_present(
            self._api.core.read_namespaced_config_map, name, self._api.namespace
        )
        if config_map is None:
            raise GraphGone(f"graph {name!r} of a traversal is gone")
        graph = graph_from_status(json.loads((config_map.data or {}).get("graph") or "{}"))
        with self._lock:
            self._graphs[name] = graph
            while len(self._graphs) > GRAPHS_KEPT:
                self._graphs.pop(next(iter(self._graphs)))
        return graph

    def put(self, stack: str, traversal: str, graph: Graph) -> str | None:
        """Store a traversal's graph and make its sync map; the graph's ConfigMap's name.

        None when the namespace is being deleted, where nothing new can be made:
        the graph then goes in the Stack's status (the delete traversal that the
        namespace deletion starts must still run, or the Stack's finalizer holds
        the namespace forever).
        """
        name = graph_name(traversal)
        body = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=name,
                labels={STACK_LABEL: label_value(stack), GRAPH_LABEL: "true"},
                owner_references=[self._api.stack_owner(stack)],
            ),
            immutable=True,
            data={"graph": json.dumps(graph_to_status(graph), sort_keys=True)},
        )
        if not self._create(body):
            return None
        with self._lock:
            self._graphs[name] = graph
        sync_map = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=sync_map_name(traversal),
                labels={STACK_LABEL: label_value(stack), GRAPH_LABEL: "sync-point"},
                owner_references=[self._api.stack_owner(stack)],
            ),
            data={SYNC_TRAVERSAL_KEY: traversal},
        )
        self._create(sync_map)
        return name

    def _create(self, body: V1ConfigMap) -> bool:
        """Create one of a traversal's ConfigMaps; False if its namespace is being deleted."""
        try:
            self._api.core.create_namespaced_config_map(self._api.namespace, body)
        except ApiException as exc:
            if is_namespace_terminating(exc):
                return False
            if not is_conflict(exc):  # a conflict: made by an earlier try of this write
                raise
        self._api.count(GRAPH_WRITE)
        return True

    def drop(self, name: str) -> None:
        """Delete a graph no traversal uses any more, and its traversal's sync map."""
        self._drop(name)
        self._drop(sync_map_name(name.removeprefix(GRAPH_PREFIX)))

    def _drop(self, name: str) -> None:
        if unless_absent(self._api.core.delete_namespaced_config_map, name, self._api.namespace):
            self._api.count(GRAPH_WRITE)
        with self._lock:
            self._sync_maps.pop(name, None)
            self._push_locks.pop(name, None)

    def drop_all(self, stack: str) -> None:
        """Delete every graph and sync map of the stack (before its Stack goes)."""
        listed = self._api.core.list_namespaced_config_map(
            self._api.namespace,
            label_selector=f"{STACK_LABEL}={label_value(stack)},{GRAPH_LABEL}",
        )
        for item in listed.items:
            if item.metadata is not None and item.metadata.name:
                self._drop(str(item.metadata.name))

    # -- stack sync maps -----------------------------------------------------------------------

    def sync_map_exists(self, traversal: str) -> bool:
        """Whether the traversal's sync map exists now (a consistent read, never a cache).

        The answer is that of a read sent after this call began; callers asking
        meanwhile share it (`JoinedReads`).
        """
        return self.fence_reads.read(traversal)

    def _sync_map_exists_now(self, traversal: str) -> bool:
        name = sync_map_name(traversal)
        if not is_object_name(name):
            return False
        try:
            # Its metadata only: whether it is there is all that matters.
            request(self._api.client, "GET", self._config_map_path(name), accept=METADATA_ONLY)
        except ApiNotFound:
            return False
        return True

    def sync_point(self, traversal: str) -> dict[str, SyncEntry]:
        """The traversal's sync map: the newest known, else read ({} if there is none)."""
        name = sync_map_name(traversal)
        with self._lock:
            known = self._sync_maps.get(name)
        if known is not None:
            return dict(known.entries)
        body = if_present(request, self._api.client, "GET", self._config_map_path(name))
        return {} if body is None else self._remember(body)

    def _config_map_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self._api.namespace}/configmaps/{name}"

    def push(self, sender: str, entry: SyncEntry) -> dict[str, SyncEntry] | None:
        """Put `sender`'s entry in the sync map of its traversal; the sync point after.

        None when the traversal has no sync map (or the sender's key cannot be a
        ConfigMap key): the entry goes to the Stack's status instead.
        """
        name = sync_map_name(entry.traversal)
        key = sync_map_key(sender)
        if key is None or not is_object_name(name):
            return None
        value = json.dumps(sync_entry_to_status(entry))
        push = [{"op": "add", "path": f"/data/{key}", "value": value}]
        with self._lock:
            turn = self._push_locks.setdefault(name, threading.Lock())
        # One push at a time from this process: the map is one object that every root
        # of the traversal writes, and the API server applies concurrent patches of one
        # object by trying again each that lost, decoding the whole map each time (in
        # an update of 1000 resources, 0.1-0.4 s per push with 8 workers at once).
        with turn:
            body = if_present(
                request,
                self._api.client,
                "PATCH",
                self._config_map_path(name),
                body=push,
                content_type=JSON_PATCH,
            )
        if body is None:
            return None
        self._api.count(STACK_PUSH)
        return self._remember(body)

    def _remember(self, body: Mapping[str, Any]) -> dict[str, SyncEntry]:
        """The entries of a sync map body, kept if it is the newest seen.

        Every push answers with the whole map, one entry per root: decoding each
        entry anew (and the client's model of the answer) made n pushes cost
        O(n²) decodes. An entry whose text is the one already known is taken as
        decoded before.
        """
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name"))
        version = int(metadata.get("resourceVersion") or 0)
        with self._lock:
            known = self._sync_maps.get(name)
        raws: dict[str, str] = {}
        entries: dict[str, SyncEntry] = {}
        for key, raw in (body.get("data") or {}).items():
            sender = sender_of_sync_map_key(key)
            if sender is None:
                continue
            raws[sender] = raw
            if known is not None and known.raws.get(sender) == raw:
                entries[sender] = known.entries[sender]
            else:
                entries[sender] = sync_entry_from_status(json.loads(raw))
        with self._lock:
            known = self._sync_maps.get(name)
            if known is None or known.version < version:
                self._sync_maps[name] = _SyncMap(version, entries, raws)
            else:
                entries = known.entries
        return dict(entries)
