"""The engine's store on the Kubernetes API: Stacks, StackResources and ControllerRevisions.

One `KubernetesStore` serves one namespace (a Stack and everything it owns
live in the Stack's namespace). The mapping (DESIGN.md §2; field by field in
`records`):

- a `StackRecord` is the engine part of its `Stack` object's status, and the
  stack-complete sync point is `status.syncPoints.complete` beside it;
- a `ResourceRecord` is a `StackResource` named by the record id, owned by the
  Stack, labelled with stack and logical name; its update and cleanup sync
  points are `status.syncPoints.update` / `.cleanup`;
- a `TemplateRevision` is an immutable `ControllerRevision` named by the
  revision id, owned by the Stack, `data` = {template}; its parameters and
  environment (hidden parameters, values read from Secrets) are in an
  immutable Secret of the same name, owned by the Stack too, since anyone
  who may view a namespace may read its ControllerRevisions. The revision of
  the last template that went in service is labelled
  `convergence.dev/last-completed=true`, and `prune_templates` deletes old
  revisions beyond a count.

Compare-and-set: `status.version` is the engine's version (Heat's atomic_key).
An engine write is one JSON patch of the status subresource whose first op
tests `/status/version` and whose other ops `add` (i.e. set) each engine field
and the next version. The API server applies a patch to the newest stored
object and retries internally when another write lands in between, so the
test and the writes are atomic; a failed test is a 422, read as `Conflict`.
The patch touches only the engine's own fields: conditions written by the
handlers and sync point entries pushed meanwhile are left as they are.

Pushes: one JSON patch op `add /status/syncPoints/<node>/<sender>` replaces
exactly that sender's entry, applied to the newest object like every patch,
so concurrent pushes of different senders never lose each other, and it
leaves `status.version` alone, so a push never fails a worker's
compare-and-set. (A JSON *merge* patch of the same key would merge into the
sender's previous entry instead of replacing it: attributes that a newer push
no longer carries, or keys of a map-valued attribute, would survive from an
older traversal.)

Every API write is counted in `writes` by kind, as the in-memory store counts
its writes, so benchmarks can relate API writes to resources and edges.

Reads: given an `ObjectCache` (the operator gives one, fed by its watch
events), reads of single objects come from it when it knows the object, and
every response to a write goes into it; a refused write drops the entry, so
the retry reads from the API (`cache` says why this is safe). Without a cache
every read is a GET.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1ConfigMap,
    V1ControllerRevision,
    V1DeleteOptions,
    V1ObjectMeta,
    V1OwnerReference,
    V1Preconditions,
    V1Secret,
)
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.graph import Graph
from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RESOURCE_LABEL,
    STACK_LABEL,
    label_value,
)
from convergence.operator.engine.store import (
    AlreadyExists,
    Conflict,
    NotFound,
    ResourceRecord,
    StackRecord,
    StoreError,
    SyncEntry,
    TemplateRevision,
)
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    RESOURCE_FINALIZER,
    STACK_KIND,
    STACK_RESOURCES,
    STACKS,
    VERSION,
    is_object_name,
    json_pointer_token,
    object_name,
)
from convergence.operator.kube.objects import ApiError, request
from convergence.operator.kube.records import (
    STACK_COMPLETE,
    engine_version,
    graph_from_status,
    graph_to_status,
    resource_from_body,
    resource_spec,
    resource_to_status,
    stack_from_body,
    stack_to_status,
    status_of,
    sync_entry_from_status,
    sync_entry_to_status,
    sync_point_from_status,
    sync_point_key,
)

# A GET answered as a table of the CRD's printer columns (crds/convergence.dev_stacks.yaml).
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
TRAVERSAL_COLUMN = "Traversal"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"

logger = logging.getLogger(__name__)

HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
HTTP_UNPROCESSABLE = 422

# Write kinds counted in KubernetesStore.writes.
STACK_WRITE = "stack"  # initialising or compare-and-set of a Stack's status
STACK_PUSH = "stack_push"
TEMPLATE_WRITE = "template"
RESOURCE_WRITE = "resource"  # create, compare-and-set or delete of a StackResource
RESOURCE_STATUS_INIT = "resource_status_init"  # the status write a create needs (subresource)
PUSH = "push"
SYNC_POINT_INIT = "sync_point_init"  # a sync point map that had to be made before a push
# The key of a template revision's Secret holding its parameters and environment.
TEMPLATE_VALUES_KEY = "values.json"
LAST_COMPLETED_LABEL = f"{GROUP}/last-completed"
# Traversal graphs: ConfigMaps named GRAPH_PREFIX + traversal id, named by status.graphRef.
GRAPH_REF = "graphRef"
GRAPH_PREFIX = "graph-"
GRAPH_LABEL = f"{GROUP}/graph"
GRAPH_WRITE = "graph"
# A traversal's stack-complete sync point: a ConfigMap named SYNC_PREFIX + traversal id,
# made with the graph; its data maps each root node (":" spelled "_") to its entry.
SYNC_PREFIX = "sync-"
SYNC_TRAVERSAL_KEY = "traversal"
SYNC_KINDS = ("update", "cleanup")
# Graphs kept parsed in memory (a few stacks' current ones).
GRAPHS_KEPT = 64
RESOURCE_RELEASE = "resource_release"  # removing a StackResource's finalizer before its delete


def _body(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"the API returned {type(value).__name__}, expected an object")
    return value


def _refusal(exc: ApiException) -> str:
    return f"{exc.status} {exc.reason}: {exc.body}"


# A JSON escape sequence: an escaped backslash, or a surrogate pair (a character beyond
# the Basic Multilingual Plane, e.g. an emoji, as json.dumps writes it).
_JSON_SURROGATE_PAIR = re.compile(r"(\\\\)|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _yaml_safe_json(text: str) -> str:
    """JSON text that YAML reads the same: YAML has no surrogate escapes, so each
    surrogate pair becomes YAML's `\\UXXXXXXXX` escape of the character."""

    def escape(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _JSON_SURROGATE_PAIR.sub(escape, text)


class KubernetesStore:
    """The engine's Store on the Kubernetes API, in one namespace. Thread-safe, counts writes."""

    def __init__(
        self, api_client: ApiClient, namespace: str, cache: ObjectCache | None = None
    ) -> None:
        self.namespace = namespace
        self.cache = cache
        self._api = api_client
        self._objects = CustomObjectsApi(api_client)
        self._apps = AppsV1Api(api_client)
        self._core = CoreV1Api(api_client)
        self._count_lock = threading.Lock()
        self.writes: Counter[str] = Counter()
        # Traversal graphs by ConfigMap name (they never change), the newest last.
        self._graphs: dict[str, Graph] = {}
        # Stack name -> (resourceVersion, record): parsing a Stack once per version.
        self._parsed_stacks: dict[str, tuple[str, StackRecord | None]] = {}
        # Stack sync point ConfigMap name -> (resourceVersion, entries), the newest seen.
        self._stack_syncs: dict[str, tuple[int, dict[str, SyncEntry]]] = {}

    def _count(self, kind: str) -> None:
        with self._count_lock:
            self.writes[kind] += 1

    @property
    def total_writes(self) -> int:
        """All API writes so far."""
        return sum(self.writes.values())

    # -- API calls -----------------------------------------------------------------------------

    def _read(self, plural: str, name: str, fresh: bool = False) -> Mapping[str, Any] | None:
        """The object's body: from the cache unless `fresh` or unknown there; None if absent."""
        if not is_object_name(name):
            return None
        if self.cache is not None and not fresh:
            cached = self.cache.get(plural, name)
            if cached is not None:
                return cached
        try:
            body = _body(
                self._objects.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                )
            )
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                return None
            raise
        self._remember(plural, body)
        return body

    def _remember(self, plural: str, body: Mapping[str, Any]) -> None:
        if self.cache is not None:
            self.cache.observe(plural, body)

    def _forget(self, plural: str, name: str) -> None:
        if self.cache is not None:
            self.cache.invalidate(plural, name)

    def _patch_status(
        self,
        plural: str,
        name: str,
        patch: list[dict[str, Any]] | dict[str, Any],
        content_type: str,
    ) -> dict[str, Any]:
        # The client would send a list as a merge patch unless told otherwise.
        try:
            body = _body(
                self._objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, plural, name, patch, _content_type=content_type
                )
            )
        except ApiException:
            # Refused because what was known is out of date (or gone): read anew next time.
            self._forget(plural, name)
            raise
        self._remember(plural, body)
        return body

    def _stack_owner(self, stack: str) -> V1OwnerReference:
        # A Stack deleted and made again under the same name has another uid, and
        # an owner reference to the old uid would have the garbage collector delete
        # the new child. The cache drops a Stack on its DELETED event and takes the
        # new one from its ADDED event, which kopf handles before the new Stack's
        # create handler can start anything, so the uid read here is the current one.
        body = self._read(STACKS, stack)
        if body is None:
            raise NotFound(f"stack {stack!r}")
        return V1OwnerReference(
            api_version=API_VERSION,
            kind=STACK_KIND,
            name=stack,
            uid=str(body["metadata"]["uid"]),
            controller=True,
            block_owner_deletion=True,
        )

    # -- engine writes (compare-and-set) -------------------------------------------------------

    def _compare_and_set(
        self,
        plural: str,
        name: str,
        expected: int,
        fields: Mapping[str, Any],
        extra_ops: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Set the engine's status fields if status.version is still `expected`."""
        ops = [{"op": "test", "path": "/status/version", "value": expected}]
        ops += [{"op": "add", "path": f"/status/{k}", "value": v} for k, v in fields.items()]
        ops += extra_ops
        try:
            return self._patch_status(plural, name, ops, JSON_PATCH)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise NotFound(f"{plural} {name!r}") from None
            if exc.status != HTTP_UNPROCESSABLE:
                raise
            # A failed test and an invalid value are both 422: the version tells them apart.
            current = self._read(plural, name, fresh=True)
            # A Stack the engine never wrote has no record; a StackResource has one at 0.
            if current is None or (plural == STACKS and engine_version(current) == 0):
                raise NotFound(f"{plural} {name!r}") from None
            if engine_version(current) != expected:
                raise Conflict(f"{plural} {name!r} changed") from None
            raise StoreError(f"{plural} {name!r}: write refused: {_refusal(exc)}") from exc

    def _initialise(
        self,
        plural: str,
        name: str,
        fields: Mapping[str, Any],
        sync_points: Iterable[str],
        taken: StoreError,
    ) -> dict[str, Any]:
        """Write the engine's first status of an object (version 0 -> 1); raise `taken` if written.

        "Not written yet" cannot be tested inside a JSON patch, so this tests
        the resourceVersion of the object that was read without a version,
        and reads again when anything else wrote it meanwhile.
        """
        sync_points = list(sync_points)
        refused_at: str | None = None
        while True:
            body = self._read(plural, name, fresh=refused_at is not None)
            if body is None:
                raise NotFound(f"{plural} {name!r}")
            if engine_version(body) != 0:
                raise taken
            resource_version = str(body["metadata"]["resourceVersion"])
            if resource_version == refused_at:
                raise StoreError(f"{plural} {name!r}: first status refused")
            status = status_of(body)
            ops: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
            ]
            if not isinstance(body.get("status"), Mapping):
                ops.append({"op": "add", "path": "/status", "value": {}})
            # Empty sync point maps, so that a push is always one `add` of one key.
            present = status.get("syncPoints")
            if not isinstance(present, Mapping):
                empty_maps: dict[str, Any] = {key: {} for key in sync_points}
                ops.append({"op": "add", "path": "/status/syncPoints", "value": empty_maps})
            else:
                ops += [
                    {"op": "add", "path": f"/status/syncPoints/{key}", "value": {}}
                    for key in sync_points
                    if not isinstance(present.get(key), Mapping)
                ]
            ops += [{"op": "add", "path": f"/status/{k}", "value": v} for k, v in fields.items()]
            try:
                return self._patch_status(plural, name, ops, JSON_PATCH)
            except ApiException as exc:
                if exc.status == HTTP_NOT_FOUND:
                    raise NotFound(f"{plural} {name!r}") from None
                if exc.status != HTTP_UNPROCESSABLE:
                    raise
                # Written meanwhile (the test failed), or refused: the next read tells.
                refused_at = resource_version

    # -- sync points ---------------------------------------------------------------------------

    def _push(
        self, plural: str, name: str, sync_point: str, sender: str, entry: SyncEntry
    ) -> dict[str, SyncEntry]:
        if not is_object_name(name):
            raise NotFound(f"{plural} {name!r}")
        path = f"/status/syncPoints/{sync_point}/{json_pointer_token(sender)}"
        push = [{"op": "add", "path": path, "value": sync_entry_to_status(entry)}]
        try:
            body = self._patch_status(plural, name, push, JSON_PATCH)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise NotFound(f"{plural} {name!r}") from None
            if exc.status != HTTP_UNPROCESSABLE:
                raise
            # The map is missing (a status written by hand, or not initialised yet):
            # a merge patch of an empty map makes it without touching one that exists.
            make_map: dict[str, Any] = {"status": {"syncPoints": {sync_point: {}}}}
            try:
                self._patch_status(plural, name, make_map, MERGE_PATCH)
                self._count(SYNC_POINT_INIT)
                body = self._patch_status(plural, name, push, JSON_PATCH)
            except ApiException as retry_exc:
                if retry_exc.status == HTTP_NOT_FOUND:
                    raise NotFound(f"{plural} {name!r}") from None
                raise StoreError(f"{plural} {name!r}: push refused: {_refusal(retry_exc)}") from (
                    retry_exc
                )
        self._count(STACK_PUSH if plural == STACKS else PUSH)
        return sync_point_from_status(status_of(body).get("syncPoints", {}).get(sync_point))

    def _sync_point(self, plural: str, name: str, sync_point: str) -> dict[str, SyncEntry]:
        body = self._read(plural, name)
        if body is None:
            return {}
        return sync_point_from_status(status_of(body).get("syncPoints", {}).get(sync_point))

    # -- stacks --------------------------------------------------------------------------------

    def create_stack(self, stack: StackRecord) -> StackRecord:
        """Initialise the engine's status of the existing Stack object `stack.name`.

        The Stack object is the user's: they create it (kubectl apply), the
        operator's create handler starts the engine, and the engine then calls
        create_stack. So "create" is the engine's first write to that object's
        status, not the creation of the object; a store that created Stack
        objects itself would fight the user over their spec. The record is
        taken when the status has an engine version already (AlreadyExists);
        NotFound when there is no such Stack object.
        """
        fields = stack_to_status(replace(stack, version=1))
        taken = AlreadyExists(f"stack {stack.name!r} is initialised already")
        body = self._initialise(STACKS, stack.name, fields, [STACK_COMPLETE], taken)
        self._count(STACK_WRITE)
        return self._stack_record(body)

    def _stack_record(self, body: Mapping[str, Any]) -> StackRecord:
        record = self._parse_stack(body)
        if record is None:
            raise StoreError(f"stack {body['metadata']['name']!r} lost its engine status")
        return record

    def _parse_stack(self, body: Mapping[str, Any]) -> StackRecord | None:
        record = stack_from_body(body)
        ref = (body.get("status") or {}).get(GRAPH_REF)
        if record is None or not ref:
            return record
        return replace(record, graph=self._graph(str(ref)))

    def _parse_stack_or_refresh(self, body: Mapping[str, Any]) -> StackRecord | None:
        """The record of a Stack body; read anew if the graph its body names is gone.

        A traversal's graph is dropped once a newer traversal is stored, so a body
        from the cache can name one that is gone: the Stack read now names the
        newer one. If that is gone too (deleted by hand, or by the deletion of the
        namespace), the record has an empty graph: no node of its traversal runs,
        and the next traversal (an update, a rollback, the delete) starts afresh.
        """
        try:
            return self._parse_stack(body)
        except GraphGone:
            pass
        name = str(body["metadata"]["name"])
        fresh = self._read(STACKS, name, fresh=True)
        if fresh is None:
            return None
        try:
            return self._parse_stack(fresh)
        except GraphGone as exc:
            logger.warning("stack %s: %s; its traversal cannot go on", name, exc)
            record = stack_from_body(fresh)
            return None if record is None else replace(record, graph=graph_from_status(None))

    # -- traversal graphs ------------------------------------------------------------------------
    #
    # A traversal's graph never changes (a new graph comes with a new traversal
    # id), and it is as large as the stack: kept in the Stack's status, every
    # write and watch event of the Stack would carry it. So it has a ConfigMap
    # of its own, written once before the traversal starts and read once.

    def _graph(self, ref: str) -> Graph:
        with self._count_lock:
            known = self._graphs.get(ref)
        if known is not None:
            return known
        try:
            config_map = self._core.read_namespaced_config_map(ref, self.namespace)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise GraphGone(f"graph {ref!r} of a traversal is gone") from None
            raise
        graph = graph_from_status(json.loads((config_map.data or {}).get("graph") or "{}"))
        with self._count_lock:
            self._graphs[ref] = graph
            while len(self._graphs) > GRAPHS_KEPT:
                self._graphs.pop(next(iter(self._graphs)))
        return graph

    def _put_graph(self, stack: str, traversal: str, graph: Graph) -> str | None:
        """Store a traversal's graph; its ConfigMap's name.

        None when the namespace is being deleted, where nothing new can be made:
        the graph then goes in the Stack's status (the delete traversal that the
        namespace deletion starts must still run, or the Stack's finalizer holds
        the namespace forever).
        """
        name = f"{GRAPH_PREFIX}{traversal}"
        body = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=name,
                labels={STACK_LABEL: label_value(stack), GRAPH_LABEL: "true"},
                owner_references=[self._stack_owner(stack)],
            ),
            immutable=True,
            data={"graph": json.dumps(graph_to_status(graph), sort_keys=True)},
        )
        if not self._create_traversal_map(body):
            return None
        with self._count_lock:
            self._graphs[name] = graph
        self._put_stack_sync_map(stack, traversal)
        return name

    def _create_traversal_map(self, body: V1ConfigMap) -> bool:
        """Create one of a traversal's ConfigMaps; False if its namespace is being deleted."""
        try:
            self._core.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            if namespace_terminating(exc):
                return False
            if exc.status != HTTP_CONFLICT:  # made by an earlier try of this write
                raise
        self._count(GRAPH_WRITE)
        return True

    def _put_stack_sync_map(self, stack: str, traversal: str) -> None:
        """Make the traversal's stack-complete sync point (before the traversal starts).

        The roots push there, not to the Stack's status: the Stack stays small and
        is written once per root less (every Stack write is a watch event that
        kopf copies whole). A push finding no such map (a traversal older than
        this code, or a namespace being deleted) goes to the Stack's status.
        """
        body = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=f"{SYNC_PREFIX}{traversal}",
                labels={STACK_LABEL: label_value(stack), GRAPH_LABEL: "sync-point"},
                owner_references=[self._stack_owner(stack)],
            ),
            data={SYNC_TRAVERSAL_KEY: traversal},
        )
        self._create_traversal_map(body)

    def _drop_graph(self, ref: str) -> None:
        """Delete a graph no traversal uses any more, and its traversal's stack sync point."""
        self._drop_traversal_map(ref)
        self._drop_traversal_map(SYNC_PREFIX + ref.removeprefix(GRAPH_PREFIX))

    def _drop_traversal_map(self, name: str) -> None:
        try:
            self._core.delete_namespaced_config_map(name, self.namespace)
            self._count(GRAPH_WRITE)
        except ApiException as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise
        with self._count_lock:
            self._stack_syncs.pop(name, None)

    def drop_graphs(self, stack: str) -> None:
        """Delete every graph and stack sync map of the stack (before its Stack goes)."""
        listed = self._core.list_namespaced_config_map(
            self.namespace, label_selector=f"{STACK_LABEL}={label_value(stack)},{GRAPH_LABEL}"
        )
        for item in listed.items:
            if item.metadata is not None and item.metadata.name:
                self._drop_traversal_map(str(item.metadata.name))

    def current_traversal(self, name: str) -> str | None:
        """The traversal id stored now (never from the cache).

        Read as the Stack's table row without the object (the `Traversal` printer
        column): as consistent as a GET of the Stack, without sending its template
        and status, which are as large as the stack and read once per step that acts.
        """
        if not is_object_name(name):
            return None
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{STACKS}/{name}"
        try:
            table = request(self._api, "GET", path, query=[("includeObject", "None")], accept=TABLE)
        except ApiError as exc:
            if exc.code == HTTP_NOT_FOUND:
                return None
            raise
        columns = [str(c.get("name")) for c in table.get("columnDefinitions") or []]
        rows = table.get("rows") or []
        if TRAVERSAL_COLUMN not in columns or len(rows) != 1:
            raise StoreError(f"stack {name!r}: no {TRAVERSAL_COLUMN} column in its table")
        return str(rows[0]["cells"][columns.index(TRAVERSAL_COLUMN)] or "")

    def get_stack(self, name: str) -> StackRecord | None:
        body = self._read(STACKS, name)
        if body is None:
            return None
        resource_version = str(body["metadata"].get("resourceVersion"))
        parsed = self._parsed_stacks.get(name)
        if parsed is not None and parsed[0] == resource_version:
            return parsed[1]
        record = self._parse_stack_or_refresh(body)
        self._parsed_stacks[name] = (resource_version, record)
        return record

    def update_stack(self, stack: StackRecord) -> StackRecord:
        current = self.get_stack(stack.name)
        if current is None:
            raise NotFound(f"stack {stack.name!r}")
        if current.version != stack.version:
            raise Conflict(f"stack {stack.name!r} changed")
        extra_ops: list[dict[str, Any]] = []
        if current.traversal != stack.traversal:
            # Entries of older traversals are ignored anyway; dropping them keeps
            # the status small. Nothing of the new traversal can have pushed yet:
            # its id becomes known to workers with this very write.
            extra_ops.append(
                {"op": "add", "path": "/status/syncPoints", "value": {STACK_COMPLETE: {}}}
            )
        fields = stack_to_status(replace(stack, version=stack.version + 1))
        # A graph's ConfigMap is named by its traversal: no need to read the ref back.
        old_ref = f"{GRAPH_PREFIX}{current.traversal}" if current.graph else None
        if current.traversal != stack.traversal or current.graph != stack.graph:
            ref = self._put_graph(stack.name, stack.traversal, stack.graph) if stack.graph else None
            fields["graphRef"] = ref
            inline = graph_to_status(stack.graph) if stack.graph and ref is None else None
            extra_ops.append({"op": "add", "path": "/status/graph", "value": inline})
        body = self._compare_and_set(STACKS, stack.name, stack.version, fields, extra_ops)
        self._count(STACK_WRITE)
        if old_ref and fields.get("graphRef", old_ref) != old_ref:
            # Steps of the old traversal see a newer traversal id and never read its graph.
            self._drop_graph(old_ref)
        return self._stack_record(body)

    def stack_sync_point(self, name: str) -> Mapping[str, SyncEntry]:
        """The Stack's status entries and those of its current traversal's sync map."""
        entries = self._sync_point(STACKS, name, STACK_COMPLETE)
        stack = self.get_stack(name)
        if stack is not None and stack.traversal and stack.graph:
            entries.update(self._stack_sync_map(f"{SYNC_PREFIX}{stack.traversal}"))
        return entries

    def push_stack_sync_point(
        self, name: str, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        sync_map = f"{SYNC_PREFIX}{entry.traversal}"
        key = sync_map_key(sender)
        if key is not None and is_object_name(sync_map):
            value = json.dumps(sync_entry_to_status(entry))
            push = [{"op": "add", "path": f"/data/{key}", "value": value}]
            try:
                body = self._core.patch_namespaced_config_map(sync_map, self.namespace, push)
            except ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise
            else:
                self._count(STACK_PUSH)
                return self._remember_stack_sync(body)
        return self._push(STACKS, name, STACK_COMPLETE, sender, entry)

    def _stack_sync_map(self, name: str) -> dict[str, SyncEntry]:
        """A traversal's stack sync map: the newest known, else read ({} if there is none)."""
        with self._count_lock:
            known = self._stack_syncs.get(name)
        if known is not None:
            return dict(known[1])
        try:
            body = self._core.read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                return {}
            raise
        return self._remember_stack_sync(body)

    def _remember_stack_sync(self, body: V1ConfigMap) -> dict[str, SyncEntry]:
        metadata = body.metadata or V1ObjectMeta()
        name = str(metadata.name)
        entries = {
            sender: sync_entry_from_status(json.loads(raw))
            for key, raw in (body.data or {}).items()
            if (sender := sender_of_sync_map_key(key)) is not None
        }
        version = int(metadata.resource_version or 0)
        with self._count_lock:
            known = self._stack_syncs.get(name)
            if known is None or known[0] < version:
                self._stack_syncs[name] = (version, entries)
            else:
                entries = known[1]
        return dict(entries)

    # -- template revisions --------------------------------------------------------------------

    def put_template(self, revision: TemplateRevision) -> None:
        """Store the revision as a ControllerRevision owned by its Stack (immutable by the API).

        Its `revision` number is one more than the stack's highest so far; the
        engine stores a stack's revisions one at a time (one handler per Stack),
        and two made at once would only share a number, never an id.
        """
        name = object_name(revision.id, "template revision id")
        owner = self._stack_owner(revision.stack)
        selector = f"{STACK_LABEL}={label_value(revision.stack)}"
        existing = self._apps.list_namespaced_controller_revision(
            self.namespace, label_selector=selector
        ).items
        number = 1 + max(
            (item.revision or 0 for item in existing if _owned_by(item, owner)), default=0
        )
        labels = {STACK_LABEL: label_value(revision.stack), MANAGED_BY_LABEL: MANAGED_BY}
        values = {
            "parameters": dict(revision.parameters),
            **({"environment": dict(revision.environment)} if revision.environment else {}),
        }
        # The values first: a revision that exists always has them. (A writer dying
        # in between leaves a Secret that goes with the Stack.)
        secret = V1Secret(
            metadata=V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            immutable=True,
            string_data={TEMPLATE_VALUES_KEY: json.dumps(values, sort_keys=True)},
        )
        body = V1ControllerRevision(
            api_version="apps/v1",
            kind="ControllerRevision",
            metadata=V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            data={"template": dict(revision.template)},
            revision=number,
        )
        try:
            self._core.create_namespaced_secret(self.namespace, secret)
            self._count(TEMPLATE_WRITE)
            # Sent in canonical JSON (sorted keys, no spaces), as the API server
            # re-encodes `data` when it applies a patch: stored otherwise, the
            # bytes differ after any label patch, which it refuses (data is immutable).
            # As YAML, since the client would encode a JSON string once more.
            api = self._apps.api_client
            canonical = _yaml_safe_json(
                json.dumps(
                    api.sanitize_for_serialization(body), sort_keys=True, separators=(",", ":")
                )
            )
            request(
                api,
                "POST",
                f"/apis/apps/v1/namespaces/{self.namespace}/controllerrevisions",
                body=canonical,
                content_type="application/yaml",
            )
        except ApiException as exc:
            if exc.status == HTTP_CONFLICT:
                raise AlreadyExists(f"template {revision.id!r} exists") from None
            raise
        except ApiError as exc:
            if exc.code == HTTP_CONFLICT:
                raise AlreadyExists(f"template {revision.id!r} exists") from None
            raise ApiException(status=exc.code, reason=exc.message) from None
        self._count(TEMPLATE_WRITE)

    def get_template(self, revision_id: str) -> TemplateRevision:
        if not is_object_name(revision_id):
            raise NotFound(f"template {revision_id!r}")
        try:
            stored = self._apps.read_namespaced_controller_revision(revision_id, self.namespace)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise NotFound(f"template {revision_id!r}") from None
            raise
        owners = (stored.metadata.owner_references if stored.metadata else None) or []
        stacks = [owner.name for owner in owners if owner.kind == STACK_KIND]
        if not stacks:
            raise NotFound(f"template {revision_id!r} belongs to no Stack")
        data = stored.data or {}
        values = dict(data)  # revisions stored before the values moved to a Secret
        if "parameters" not in data:
            try:
                secret = self._core.read_namespaced_secret(revision_id, self.namespace)
            except ApiException as exc:
                if exc.status == HTTP_NOT_FOUND:
                    raise NotFound(f"parameters of template {revision_id!r}") from None
                raise
            encoded = (secret.data or {}).get(TEMPLATE_VALUES_KEY, "")
            values = json.loads(base64.b64decode(encoded).decode("utf-8") or "{}")
        return TemplateRevision(
            id=revision_id,
            stack=stacks[0],
            template=dict(data.get("template") or {}),
            parameters=dict(values.get("parameters") or {}),
            environment=dict(values.get("environment") or {}),
        )

    def prune_templates(self, stack: str, keep: set[str], limit: int) -> list[str]:
        """Delete revisions beyond the newest `limit` that are not in use.

        `keep` are revision ids still in use (the stack's current and last
        completed templates, and any a record's action or state refers to):
        never deleted, and not counted. Returns the ids deleted.
        """
        owner = self._stack_owner(stack)
        selector = f"{STACK_LABEL}={label_value(stack)}"
        revisions = sorted(
            (
                item
                for item in self._apps.list_namespaced_controller_revision(
                    self.namespace, label_selector=selector
                ).items
                if _owned_by(item, owner) and item.metadata is not None
            ),
            key=lambda item: item.revision or 0,
            reverse=True,
        )
        deleted: list[str] = []
        spare = 0
        for item in revisions:
            name = str(item.metadata.name if item.metadata else "")
            if name in keep:
                continue
            spare += 1
            if spare <= limit:
                continue
            for delete in (
                self._apps.delete_namespaced_controller_revision,
                self._core.delete_namespaced_secret,
            ):
                try:
                    delete(name, self.namespace)
                    self._count(TEMPLATE_WRITE)
                except ApiException as exc:
                    if exc.status != HTTP_NOT_FOUND:
                        raise
            deleted.append(name)
        return deleted

    def mark_last_completed(self, stack: str, revision_id: str | None) -> None:
        """Label the revision of the last template that went in service (and no other)."""
        selector = f"{STACK_LABEL}={label_value(stack)},{LAST_COMPLETED_LABEL}=true"
        marked = {
            str(item.metadata.name)
            for item in self._apps.list_namespaced_controller_revision(
                self.namespace, label_selector=selector
            ).items
            if item.metadata is not None
        }
        changes: dict[str, str | None] = {name: None for name in marked if name != revision_id}
        if revision_id is not None and revision_id not in marked:
            changes[revision_id] = "true"
        for name, value in changes.items():
            try:
                self._apps.patch_namespaced_controller_revision(
                    name, self.namespace, {"metadata": {"labels": {LAST_COMPLETED_LABEL: value}}}
                )
                self._count(TEMPLATE_WRITE)
            except ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise

    # -- resource records ----------------------------------------------------------------------

    def create_resource(self, record: ResourceRecord) -> ResourceRecord:
        """Create the StackResource, then write its first status (two API writes).

        The status cannot go with the create: the API server ignores `status`
        in a create when the status subresource is on. If the writer dies in
        between, the object reads as an INIT record at version 0 (see
        `records.resource_from_body`) and is cleaned up by a later traversal.
        """
        name = object_name(record.id, "resource record id")
        owner = self._stack_owner(record.stack)
        body = {
            "apiVersion": API_VERSION,
            "kind": "StackResource",
            "metadata": {
                "name": name,
                "labels": {
                    STACK_LABEL: label_value(record.stack),
                    RESOURCE_LABEL: label_value(record.name),
                    MANAGED_BY_LABEL: MANAGED_BY,
                },
                "ownerReferences": [owner.to_dict(serialize=True)],
                "finalizers": [RESOURCE_FINALIZER],
            },
            "spec": resource_spec(record),
        }
        try:
            created = self._objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACK_RESOURCES, body
            )
        except ApiException as exc:
            if exc.status == HTTP_CONFLICT:
                raise AlreadyExists(f"resource {record.id!r} exists") from None
            raise
        self._remember(STACK_RESOURCES, _body(created))
        self._count(RESOURCE_WRITE)
        stored = self._write_resource(replace(record, version=0), RESOURCE_STATUS_INIT)
        return stored

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        body = self._read(STACK_RESOURCES, record_id)
        return None if body is None else resource_from_body(body)

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        listed = _body(
            self._objects.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                STACK_RESOURCES,
                label_selector=f"{STACK_LABEL}={label_value(stack)}",
            )
        )
        # A shortened label value may be shared; the spec says whose it is.
        records = [
            resource_from_body(item) for item in listed["items"] if item["spec"]["stack"] == stack
        ]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def update_resource(self, record: ResourceRecord) -> ResourceRecord:
        """Compare-and-set the record's status. The spec (its identity) is never rewritten."""
        if not is_object_name(record.id):
            raise NotFound(f"resource {record.id!r}")
        return self._write_resource(record, RESOURCE_WRITE)

    def _write_resource(self, record: ResourceRecord, kind: str) -> ResourceRecord:
        fields = resource_to_status(replace(record, version=record.version + 1))
        if record.version == 0:
            taken = Conflict(f"resource {record.id!r} changed")
            sync_points = [sync_point_key(True), sync_point_key(False)]
            body = self._initialise(STACK_RESOURCES, record.id, fields, sync_points, taken)
        else:
            body = self._compare_and_set(STACK_RESOURCES, record.id, record.version, fields)
        self._count(kind)
        return resource_from_body(body)

    def delete_resource(self, record: ResourceRecord) -> None:
        """Delete the StackResource if its version is still the record's.

        The engine calls this when the physical resource is gone (or released)
        and the successors were told, so it first takes its finalizer off and
        then deletes the object; both writes carry the resourceVersion read with
        the record's version as a precondition, so they fail if anything wrote in
        between (a push changes the resourceVersion but not the version: then it
        reads and tries again). An object already being deleted (by hand, or by
        the garbage collector) only needs its finalizer taken off to go.
        """
        fresh = False
        while True:
            body = self._read(STACK_RESOURCES, record.id, fresh=fresh)
            if body is None:
                raise NotFound(f"resource {record.id!r}")
            if engine_version(body) != record.version:
                raise Conflict(f"resource {record.id!r} changed")
            metadata = body["metadata"]
            try:
                metadata = self._release(record.id, metadata)
                if metadata is None:
                    break  # it was being deleted already, and is gone now
                preconditions = V1Preconditions(
                    resource_version=str(metadata["resourceVersion"]), uid=str(metadata["uid"])
                )
                self._objects.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    STACK_RESOURCES,
                    record.id,
                    body=V1DeleteOptions(preconditions=preconditions),
                )
            except ApiException as exc:
                self._forget(STACK_RESOURCES, record.id)
                if exc.status == HTTP_NOT_FOUND:
                    raise NotFound(f"resource {record.id!r}") from None
                if exc.status in (HTTP_CONFLICT, HTTP_UNPROCESSABLE):
                    fresh = True
                    continue
                raise
            self._count(RESOURCE_WRITE)
            break
        self._forget(STACK_RESOURCES, record.id)

    def _release(self, name: str, metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Take the finalizer off; the object's metadata after, or None if that let it go."""
        finalizers = list(metadata.get("finalizers") or [])
        if RESOURCE_FINALIZER not in finalizers:
            return metadata
        index = finalizers.index(RESOURCE_FINALIZER)
        ops = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": metadata["resourceVersion"],
            },
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": RESOURCE_FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        released = _body(
            self._objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                STACK_RESOURCES,
                name,
                ops,
                _content_type=JSON_PATCH,
            )
        )
        self._count(RESOURCE_RELEASE)
        if metadata.get("deletionTimestamp") and not released["metadata"].get("finalizers"):
            return None
        return cast(Mapping[str, Any], released["metadata"])

    def sync_point(self, record_id: str, is_update: bool) -> Mapping[str, SyncEntry]:
        return self._sync_point(STACK_RESOURCES, record_id, sync_point_key(is_update))

    def push(
        self, record_id: str, is_update: bool, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        return self._push(STACK_RESOURCES, record_id, sync_point_key(is_update), sender, entry)


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


class GraphGone(StoreError):
    """The ConfigMap holding a traversal's graph does not exist."""


def namespace_terminating(exc: ApiException) -> bool:
    """Whether the API refused to make an object because its namespace is being deleted."""
    if exc.status != HTTP_FORBIDDEN:
        return False
    try:
        causes = (json.loads(exc.body or "{}").get("details") or {}).get("causes") or []
    except ValueError:
        return False
    return any(cause.get("reason") == "NamespaceTerminating" for cause in causes)


def _owned_by(revision: V1ControllerRevision, owner: V1OwnerReference) -> bool:
    owners = (revision.metadata.owner_references if revision.metadata else None) or []
    return any(reference.uid == owner.uid for reference in owners)
