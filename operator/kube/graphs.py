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

A push rewrites its whole map (the API server decodes it, patches it and
stores it again), so with one map for every root, n roots cost O(n²): 1152
pushes in turn into one ConfigMap took 15.7 s, against 4.7 s spread over 9
(the last tenth 16.8 ms a push against 3.1 ms; tests/bench/bench_sync_map.py).
A graph with more than
`SHARD_ENTRIES` roots therefore spreads its entries over `shards` maps,
`sync-<traversal>-<i>`, by a hash of the sender, and `sync-<traversal>` keeps
only the traversal and the number of shards: the small object whose
existence says the traversal is current. Reading the sync point reads every
shard. So that some pusher sees the last entry of every shard, a push that
completes its shard (the roots it holds, or the update roots it holds) reads
again, from the API, each other shard not known complete: of the pushes that
complete a shard, the last one's reads find every other shard complete.

Both are owned by the Stack and labelled with it and `convergence.dev/graph`,
and both go when a newer traversal is stored or the Stack is deleted.
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client import V1ConfigMap, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.graph import Graph, Node
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
SYNC_SHARDS_KEY = "shards"
# Roots one stack sync map holds at most before the entries are spread over shards.
SHARD_ENTRIES = 128
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


def shard_name(traversal: str, index: int) -> str:
    """The name of shard `index` of the stack-complete sync point of `traversal`."""
    return f"{SYNC_PREFIX}{traversal}-{index}"


def shard_count(senders: int) -> int:
    """Shards of a sync map awaiting `senders` roots; 0 keeps them in the map itself."""
    return 0 if senders <= SHARD_ENTRIES else math.ceil(senders / SHARD_ENTRIES)


def shard_of(sender: str, shards: int) -> int:
    """The shard that holds `sender`'s entry (the same in every process)."""
    return zlib.crc32(sender.encode()) % shards


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


@dataclass(frozen=True)
class _Layout:
    """Where a traversal's stack sync point lives: the map names its entries are in, and
    per shard the roots and the update roots it holds (empty with a single map)."""

    names: tuple[str, ...]
    roots: tuple[frozenset[str], ...] = ()
    update_roots: tuple[frozenset[str], ...] = ()

    @property
    def sharded(self) -> bool:
        return bool(self.roots)

    def shard(self, sender: str) -> int:
        return shard_of(sender, len(self.names)) if self.sharded else 0


def _single(traversal: str) -> _Layout:
    """The layout of a sync point held in `sync-<traversal>` itself."""
    return _Layout((sync_map_name(traversal),))


def _sharded(traversal: str, shards: int, graph: Graph) -> _Layout:
    """The layout of a sync point spread over `shards` maps, with what each awaits."""

    def by_shard(nodes: frozenset[Node]) -> tuple[frozenset[str], ...]:
        keys = [n.key() for n in nodes]
        return tuple(frozenset(k for k in keys if shard_of(k, shards) == i) for i in range(shards))

    names = tuple(shard_name(traversal, i) for i in range(shards))
    return _Layout(names, by_shard(graph.roots), by_shard(graph.update_roots))


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
        # Traversal -> where its stack sync point lives (the newest last).
        self._layouts: dict[str, _Layout] = {}
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
        shards = shard_count(len(graph.roots | graph.update_roots))
        data = {SYNC_TRAVERSAL_KEY: traversal}
        if shards:
            data[SYNC_SHARDS_KEY] = str(shards)
        layout = _sharded(traversal, shards, graph) if shards else _single(traversal)
        # The shards first: the map that says the traversal is current comes last.
        shard_names = layout.names if shards else ()
        for map_name in (*shard_names, sync_map_name(traversal)):
            self._create(self._sync_map_body(stack, map_name, data))
        self._keep_layout(traversal, layout)
        return name

    def _sync_map_body(self, stack: str, name: str, data: dict[str, str]) -> V1ConfigMap:
        return V1ConfigMap(
            metadata=V1ObjectMeta(
                name=name,
                labels={STACK_LABEL: label_value(stack), GRAPH_LABEL: "sync-point"},
                owner_references=[self._api.stack_owner(stack)],
            ),
            data=dict(data),
        )

    def _keep_layout(self, traversal: str, layout: _Layout) -> None:
        with self._lock:
            self._layouts[traversal] = layout
            while len(self._layouts) > GRAPHS_KEPT:
                self._layouts.pop(next(iter(self._layouts)))

    def _layout(self, traversal: str) -> _Layout | None:
        """Where the traversal's stack sync point lives; None if it has no sync map.

        The map `sync-<traversal>` says how many shards there are (none: it holds
        the entries itself, as maps made before shards did): read once per process.
        """
        with self._lock:
            known = self._layouts.get(traversal)
        if known is not None:
            return known
        fence = self._read_fence(traversal)
        if fence is None:
            return None
        shards, body = fence
        if shards == 0:
            self._remember(body)
            layout = _single(traversal)
        else:
            try:
                graph = self.graph(graph_name(traversal))
            except GraphGone:
                return None  # dropped: a newer traversal is the stack's
            layout = _sharded(traversal, shards, graph)
        self._keep_layout(traversal, layout)
        return layout

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

    def _read_fence(self, traversal: str) -> tuple[int, Mapping[str, Any]] | None:
        """The traversal's map `sync-<traversal>` as read now, and its number of shards."""
        name = sync_map_name(traversal)
        if not is_object_name(name):
            return None
        body = if_present(request, self._api.client, "GET", self._config_map_path(name))
        if body is None:
            return None
        return int((body.get("data") or {}).get(SYNC_SHARDS_KEY) or 0), body

    def drop(self, name: str) -> None:
        """Delete a graph no traversal uses any more, and its traversal's sync maps."""
        traversal = name.removeprefix(GRAPH_PREFIX)
        with self._lock:
            layout = self._layouts.pop(traversal, None)
        if layout is not None:
            shards = layout.names if layout.sharded else ()
        else:
            fence = self._read_fence(traversal)
            count = 0 if fence is None else fence[0]
            shards = tuple(shard_name(traversal, i) for i in range(count))
        self._drop(name)
        self._drop(sync_map_name(traversal))
        for shard in shards:
            self._drop(shard)

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
        """The traversal's sync point: each of its maps the newest known, else read ({} if
        it has none)."""
        layout = self._layout(traversal)
        if layout is None:
            return {}
        entries: dict[str, SyncEntry] = {}
        for name in layout.names:
            known = self._known(name)
            if known is None:
                body = if_present(request, self._api.client, "GET", self._config_map_path(name))
                known = {} if body is None else self._remember(body)
            entries.update(known)
        return entries

    def _known(self, name: str) -> dict[str, SyncEntry] | None:
        with self._lock:
            known = self._sync_maps.get(name)
        return None if known is None else dict(known.entries)

    def _config_map_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self._api.namespace}/configmaps/{name}"

    def push(self, sender: str, entry: SyncEntry) -> dict[str, SyncEntry] | None:
        """Put `sender`'s entry in the sync map of its traversal; the sync point after.

        None when the traversal has no sync map (or the sender's key cannot be a
        ConfigMap key): the entry goes to the Stack's status instead.
        """
        key = sync_map_key(sender)
        layout = None if key is None else self._layout(entry.traversal)
        if layout is None:
            return None
        index = layout.shard(sender)
        name = layout.names[index]
        value = json.dumps(sync_entry_to_status(entry))
        push = [{"op": "add", "path": f"/data/{key}", "value": value}]
        with self._lock:
            turn = self._push_locks.setdefault(name, threading.Lock())
        # One push at a time from this process into one map: it is one object that many
        # roots of the traversal write, and the API server applies concurrent patches of
        # one object by trying again each that lost, decoding the whole map each time (in
        # an update of 1000 resources with one map, 0.1-0.4 s per push with 8 workers).
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
        pushed = self._remember(body)
        if not layout.sharded:
            return pushed
        self._read_unfinished_shards(layout, index, sender, set(pushed))
        return self.sync_point(entry.traversal)

    def _read_unfinished_shards(
        self, layout: _Layout, index: int, sender: str, arrived: set[str]
    ) -> None:
        """After `sender`'s push into shard `index` (which then held `arrived`): if it
        completed that shard's roots (or update roots), read again from the API every
        other shard not known complete, so that the sync point read next is whole."""
        unfinished: set[int] = set()
        for expected in (layout.roots, layout.update_roots):
            if sender not in expected[index] or not expected[index] <= arrived:
                continue
            for other, name in enumerate(layout.names):
                if other != index and not expected[other] <= set(self._known(name) or {}):
                    unfinished.add(other)
        for other in sorted(unfinished):
            name = layout.names[other]
            body = if_present(request, self._api.client, "GET", self._config_map_path(name))
            if body is not None:
                self._remember(body)

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
