"""The engine's Store on the Kubernetes API: Stacks and StackResources.

One `KubernetesStore` serves one namespace (a Stack and everything it owns
live in the Stack's namespace). The mapping (DESIGN.md §2; field by field in
`records`):

- a `StackRecord` is the engine part of its `Stack` object's status, and the
  stack-complete sync point is `status.syncPoints.complete` beside it, or the
  sync map of the traversal (`graphs`); the traversal's graph is in a
  ConfigMap of its own that `status.graphRef` names (`graphs`);
- a `ResourceRecord` is a `StackResource` named by the record id (readable:
  `engine.record_ids`), owned by the Stack, labelled with stack and logical
  name, holding a finalizer that lets it go only after its physical resource
  (`RESOURCE_FINALIZER`); its update and cleanup sync points are
  `status.syncPoints.update` / `.cleanup`;
- a `TemplateRevision` is a ControllerRevision and a Secret (`revisions`).

Every engine write is a compare-and-set of `status.version`, every push one
JSON patch op, and every API write is counted by kind in `writes` (`api`
says how and why).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, cast

from kubernetes.client import ApiClient, V1DeleteOptions, V1Preconditions
from kubernetes.client.exceptions import ApiException

from convergence.operator import conditions
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
    OwnPush,
    ResourceRecord,
    StackRecord,
    StoreError,
    SyncEntry,
    TemplateRevision,
    create_if_new,
)
from convergence.operator.kube.api import (
    JSON_PATCH,
    RESOURCE_RELEASE,
    RESOURCE_WRITE,
    STACK_WRITE,
    NamespacedApi,
    as_object,
    is_conflict,
    is_invalid,
    is_not_found,
    list_pages,
    request,
)
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.graphs import GraphGone, TraversalGraphs, graph_name
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    RESOURCE_FINALIZER,
    STACK_RESOURCES,
    STACKS,
    VERSION,
    is_object_name,
    json_pointer_token,
    object_name,
)
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
    sync_entry_to_status,
    sync_point_key,
)
from convergence.operator.kube.revisions import TemplateRevisions

# A GET answered as a table of the CRD's printer columns (crds/convergence.dev_stacks.yaml).
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
# Records created at once when a traversal starts (the API server takes about
# twice the writes per second from 16 client threads as from one, on 2 cores).
CREATE_CONCURRENCY = 16
TRAVERSAL_COLUMN = "Traversal"
# The Stack status field naming the ConfigMap of its traversal's graph.
GRAPH_REF = "graphRef"

logger = logging.getLogger(__name__)


# The process's threads that create records: `CREATE_CONCURRENCY` for all the traversals
# starting at once (they start on the first submit). A pool per start made 16 threads
# per stack: 10 stacks of 1000 applied together ran up to 121 threads (41 now), and
# more requests at once than the client's pool keeps connections for, so 104
# connections were opened and dropped (3 now), for no more writes per second than 16
# threads get from the API server.
_CREATORS = ThreadPoolExecutor(CREATE_CONCURRENCY, thread_name_prefix="create")


class KubernetesStore:
    """The engine's Store on the Kubernetes API, in one namespace. Thread-safe, counts writes."""

    def __init__(
        self, api_client: ApiClient, namespace: str, cache: ObjectCache | None = None
    ) -> None:
        self.api = NamespacedApi(api_client, namespace, cache)
        self.graphs = TraversalGraphs(self.api)
        self.revisions = TemplateRevisions(self.api)
        # Stack name -> (resourceVersion, record): parsing a Stack once per version.
        self._parsed_stacks: dict[str, tuple[str, StackRecord | None]] = {}

    @property
    def namespace(self) -> str:
        return self.api.namespace

    @property
    def cache(self) -> ObjectCache | None:
        return self.api.cache

    @property
    def writes(self) -> Counter[str]:
        """API writes so far, by kind (the kinds are in `api`)."""
        return self.api.writes

    @property
    def total_writes(self) -> int:
        """All API writes so far."""
        return sum(self.api.writes.values())

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
        body = self.api.first_write(STACKS, stack.name, fields, [STACK_COMPLETE], taken)
        self.api.count(STACK_WRITE)
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
        return replace(record, graph=self.graphs.graph(str(ref)))

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
        fresh = self.api.read(STACKS, name, fresh=True)
        if fresh is None:
            return None
        try:
            return self._parse_stack(fresh)
        except GraphGone as exc:
            logger.warning("stack %s: %s; its traversal cannot go on", name, exc)
            record = stack_from_body(fresh)
            return None if record is None else replace(record, graph=graph_from_status(None))

    def is_current(self, name: str, traversal: str) -> bool:
        """Whether `traversal` is the stack's traversal as stored now (never from a cache).

        A traversal's sync map is made before the Stack names the traversal and
        deleted right after a newer one is stored (`update_stack`), so while it
        exists the traversal is the current one: a consistent GET of that small
        ConfigMap answers, where reading the Stack costs far more (see
        `current_traversal`). A traversal without one (its graph is in the Stack's
        status) or whose map is gone asks the Stack itself.
        """
        if self.graphs.sync_map_exists(traversal):
            return True
        return self.current_traversal(name) == traversal

    def current_traversal(self, name: str) -> str | None:
        """The traversal id stored now (never from the operator's cache).

        Read as the Stack's table row without the object (the `Traversal` printer
        column), through a list of the one Stack by name: the API server serves a
        list from its watch cache once that has caught up with etcd (a consistent
        read), where a GET decodes the Stack from etcd, template and all. A step
        that acts reads this once, so with GETs a create of n resources decoded
        n Stacks of size n: half the API server's CPU time at 1000 resources.
        """
        if not is_object_name(name):
            return None
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{STACKS}"
        table = request(
            self.api.client,
            "GET",
            path,
            query=[("fieldSelector", f"metadata.name={name}"), ("includeObject", "None")],
            accept=TABLE,
        )
        columns = [str(c.get("name")) for c in table.get("columnDefinitions") or []]
        rows = table.get("rows") or []
        if not rows:
            return None
        if TRAVERSAL_COLUMN not in columns or len(rows) != 1:
            raise StoreError(f"stack {name!r}: no {TRAVERSAL_COLUMN} column in its table")
        return str(rows[0]["cells"][columns.index(TRAVERSAL_COLUMN)] or "")

    def get_stack(self, name: str) -> StackRecord | None:
        body = self.api.read(STACKS, name)
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
        old_ref = graph_name(current.traversal) if current.graph else None
        if current.traversal != stack.traversal or current.graph != stack.graph:
            ref = self.graphs.put(stack.name, stack.traversal, stack.graph) if stack.graph else None
            fields[GRAPH_REF] = ref
            inline = graph_to_status(stack.graph) if stack.graph and ref is None else None
            extra_ops.append({"op": "add", "path": "/status/graph", "value": inline})
        try:
            body = self.api.compare_and_set(STACKS, stack.name, stack.version, fields, extra_ops)
        except Conflict:
            # Another worker or replica changed the stack first: the graph and sync map
            # made for this traversal would belong to no traversal ever.
            if fields.get(GRAPH_REF) and fields[GRAPH_REF] != old_ref:
                self.graphs.drop(str(fields[GRAPH_REF]))
            raise
        self.api.count(STACK_WRITE)
        if old_ref and fields.get(GRAPH_REF, old_ref) != old_ref:
            # Steps of the old traversal see a newer traversal id and never read its graph.
            self.graphs.drop(old_ref)
        return self._stack_record(body)

    def stack_sync_point(self, name: str) -> Mapping[str, SyncEntry]:
        """The Stack's status entries and those of its current traversal's sync map."""
        entries = self.api.sync_point(STACKS, name, STACK_COMPLETE)
        stack = self.get_stack(name)
        if stack is not None and stack.traversal and stack.graph:
            entries.update(self.graphs.sync_point(stack.traversal))
        return entries

    def push_stack_sync_point(
        self, name: str, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        pushed = self.graphs.push(sender, entry)
        if pushed is not None:
            return pushed
        return self.api.push(STACKS, name, STACK_COMPLETE, sender, entry)

    # -- template revisions (kept in `revisions`) -----------------------------------------------

    def put_template(self, revision: TemplateRevision) -> None:
        self.revisions.put(revision)

    def get_template(self, revision_id: str) -> TemplateRevision:
        return self.revisions.get(revision_id)

    # -- resource records ----------------------------------------------------------------------

    def create_resource(self, record: ResourceRecord) -> ResourceRecord:
        """Create the StackResource (one API write): an INIT record at version 0.

        The status cannot go with the create (the API server ignores `status`
        in a create when the status subresource is on), so the record as first
        written is in the spec (see `records.resource_from_body`); the engine's
        first action on it writes the first status, and pushes make their sync
        point maps as they come.
        """
        name = object_name(record.id, "resource record id")
        owner = self.api.stack_owner(record.stack)
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
            created = self.api.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACK_RESOURCES, body
            )
        except ApiException as exc:
            if is_conflict(exc):
                raise AlreadyExists(f"resource {record.id!r} exists") from None
            raise
        self.api.remember(STACK_RESOURCES, as_object(created))
        self.api.count(RESOURCE_WRITE)
        return resource_from_body(as_object(created))

    def create_resources(
        self, records: Sequence[ResourceRecord], *, exist_ok: bool = False
    ) -> list[ResourceRecord]:
        """Create the records `CREATE_CONCURRENCY` at a time (each its two writes in order).

        They are independent objects, and the traversal waits for all of them:
        one at a time, a 1000-resource stack spent seconds on round trips here.
        """
        if len(records) <= 1:
            return [create_if_new(self, record, exist_ok) for record in records]
        futures = [_CREATORS.submit(create_if_new, self, record, exist_ok) for record in records]
        wait(futures)  # all of them done, as a failure of one is raised
        return [future.result() for future in futures]

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        body = self.api.read(STACK_RESOURCES, record_id)
        return None if body is None else resource_from_body(body)

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{STACK_RESOURCES}"
        selector = ("labelSelector", f"{STACK_LABEL}={label_value(stack)}")
        records = [
            resource_from_body(item)
            for page in list_pages(self.api.client, path, query=[selector])
            for item in page.get("items", [])
            # A shortened label value may be shared; the spec says whose it is.
            if item["spec"]["stack"] == stack
        ]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def update_resource(
        self, record: ResourceRecord, own_push: OwnPush | None = None
    ) -> ResourceRecord:
        """Compare-and-set the record's status. The spec (its identity) is never rewritten."""
        if not is_object_name(record.id):
            raise NotFound(f"resource {record.id!r}")
        fields = resource_to_status(replace(record, version=record.version + 1))
        fields.update(self._report(record))
        ops: list[dict[str, Any]] = []
        if own_push is not None:
            sync_point = sync_point_key(own_push.is_update)
            path = f"/status/syncPoints/{sync_point}/{json_pointer_token(own_push.sender)}"
            ops.append({"op": "add", "path": path, "value": sync_entry_to_status(own_push.entry)})
        if record.version == 0:
            taken = Conflict(f"resource {record.id!r} changed")
            sync_points = [sync_point_key(True), sync_point_key(False)]
            body = self.api.first_write(STACK_RESOURCES, record.id, fields, sync_points, taken, ops)
        else:
            body = self.api.compare_and_set(STACK_RESOURCES, record.id, record.version, fields, ops)
        self.api.count(RESOURCE_WRITE)
        return resource_from_body(body)

    def _report(self, record: ResourceRecord) -> dict[str, Any]:
        """The conditions and reported phase a user reads, written with the record.

        A record is written when one of its nodes acts, so its dependencies are
        ready; the phase it reaches is reported as it is written (its Event is
        the operator's, after the step: see `status.Status.report_resource`).
        Written apart, these cost a status write per step that changes a phase.
        """
        known = self.api.read(STACK_RESOURCES, record.id) or {}
        generation = known.get("metadata", {}).get("generation")
        previous = status_of(known).get("conditions") or []
        wanted = conditions.resource_conditions(record, None)
        return {
            "conditions": conditions.merge(previous, wanted, generation),
            "reportedPhase": record.phase,
        }

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
            body = self.api.read(STACK_RESOURCES, record.id, fresh=fresh)
            if body is None:
                raise NotFound(f"resource {record.id!r}")
            if engine_version(body) != record.version:
                raise Conflict(f"resource {record.id!r} changed")
            metadata = body["metadata"]
            uid = str(metadata["uid"])
            try:
                metadata = self._release(record.id, metadata)
                if metadata is None:
                    break  # it was being deleted already, and is gone now
                preconditions = V1Preconditions(
                    resource_version=str(metadata["resourceVersion"]), uid=str(metadata["uid"])
                )
                self.api.objects.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    STACK_RESOURCES,
                    record.id,
                    body=V1DeleteOptions(preconditions=preconditions),
                )
            except ApiException as exc:
                self.api.forget(STACK_RESOURCES, record.id)
                if is_not_found(exc):
                    raise NotFound(f"resource {record.id!r}") from None
                if is_conflict(exc) or is_invalid(exc):
                    fresh = True
                    continue
                raise
            self.api.count(RESOURCE_WRITE)
            break
        self.api.deleted(STACK_RESOURCES, record.id, uid)

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
        released = as_object(
            self.api.objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                STACK_RESOURCES,
                name,
                ops,
                _content_type=JSON_PATCH,
            )
        )
        self.api.count(RESOURCE_RELEASE)
        if metadata.get("deletionTimestamp") and not released["metadata"].get("finalizers"):
            return None
        return cast(Mapping[str, Any], released["metadata"])

    def sync_point(self, record_id: str, is_update: bool) -> Mapping[str, SyncEntry]:
        return self.api.sync_point(STACK_RESOURCES, record_id, sync_point_key(is_update))

    def push(
        self, record_id: str, is_update: bool, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        return self.api.push(STACK_RESOURCES, record_id, sync_point_key(is_update), sender, entry)
