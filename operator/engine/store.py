"""The store: the records a traversal reads and writes, its interface, and an in-memory store.

Records and their Kubernetes counterparts:
- `StackRecord` ↔ the `Stack` custom resource's status: current traversal id,
  current and last completed (`prev_template`) template revisions, phase
  (action + status), reason, readiness, the traversal's graph, rollback and
  timeout settings, outputs. Its stack-complete sync point is kept beside it
  (a map in the same status, merged one key at a time).
- `TemplateRevision` ↔ an immutable revision object (e.g. a ControllerRevision).
- `ResourceRecord` ↔ a `StackResource` custom resource: one per physical
  resource *version* (a replacement is a new record with `replaces`), named
  by its id, `<stack>-<logical name>-<short id>` (`record_ids`).
- A sync point ↔ a map in the node's own `StackResource` status
  (`syncPoints.update` / `syncPoints.cleanup`), keyed by sender node; each
  entry carries the sender's traversal id and data.

Rules every implementation keeps:
- `update_*` / `delete_resource` are compare-and-set on `version` (Heat's
  atomic_key; e.g. a JSON patch whose first op tests `status.version`), and
  raise `Conflict` when someone else wrote first.
- A push merges exactly one key of one sync point atomically and never loses a
  concurrent push to another key (a merge patch). Pushes do not change
  `version`, so they never make a worker's compare-and-set fail.
- Writes of stack state are made through `operations.py`, which checks that the
  traversal is still current inside the compare-and-set.
- Every write is counted (`writes`), for the O(n + m) property.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from convergence.operator.engine.graph import Graph

# Heat's resource and stack actions and statuses.
INIT = "INIT"
CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"
ROLLBACK = "ROLLBACK"
IN_PROGRESS = "IN_PROGRESS"
COMPLETE = "COMPLETE"
FAILED = "FAILED"


class StoreError(Exception):
    """Base of the store's errors."""


class Conflict(StoreError):
    """A compare-and-set lost: the record changed since it was read."""


class NotFound(StoreError):
    """The record does not exist (any more)."""


class AlreadyExists(StoreError):
    """A record with this key exists already."""


@dataclass(frozen=True)
class NodeData:
    """What a finished update node sends its dependents (Heat's NodeData)."""

    record_id: str
    name: str
    reference_id: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "recordId": self.record_id,
            "name": self.name,
            "referenceId": self.reference_id,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NodeData:
        """Inverse of to_dict()."""
        return cls(raw["recordId"], raw["name"], raw["referenceId"], dict(raw["attributes"]))


@dataclass(frozen=True)
class SyncEntry:
    """One sender's entry in a sync point: its traversal and, for update nodes, its data."""

    traversal: str
    data: NodeData | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "traversal": self.traversal,
            "data": None if self.data is None else self.data.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SyncEntry:
        """Inverse of to_dict()."""
        data = raw.get("data")
        return cls(raw["traversal"], None if data is None else NodeData.from_dict(data))


@dataclass(frozen=True)
class OwnPush:
    """A push into one of a record's own sync points, made by the write of the record.

    A record's update node pushes to its own cleanup node when it completes:
    going with the record's write, that costs no write of its own.
    """

    is_update: bool  # into the update node's sync point (else the cleanup node's)
    sender: str
    entry: SyncEntry


@dataclass(frozen=True)
class TemplateRevision:
    """An immutable template with the parameters and the environment it was applied with.

    `environment` is Heat's environment as the Stack gives it (see
    `hot/environment.py`); `files` is Heat's files map (file name -> text, the
    Stack's `spec.files`): what `get_file` reads and where template resources
    find their templates.
    """

    id: str
    stack: str
    template: Mapping[str, Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackRecord:
    """A stack: its current traversal and what that traversal converges to."""

    name: str
    uid: str
    traversal: str
    # Template revision ids; None is the empty template.
    template: str | None = None
    prev_template: str | None = None
    action: str = INIT
    status: str = COMPLETE
    status_reason: str = ""
    # In service: every update node of the traversal is done.
    ready: bool = False
    graph: Graph = field(default_factory=Graph.empty)
    disable_rollback: bool = True
    timeout: float | None = None
    started_at: float = 0.0
    outputs: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0
    # The caller's id of the desired state the last create or update started to
    # converge to (on Kubernetes the Stack's generation, then maybe " retry <value>"):
    # a create or update asked again for the same id finds it started already
    # (several operator replicas hear of one change, and each asks), and one asked
    # for an older generation finds itself superseded (a replica that was cut off
    # for a while asks for what it read then; see operations.superseded).
    desired: str | None = None

    @property
    def phase(self) -> str:
        """Heat's stack state, e.g. UPDATE_IN_PROGRESS."""
        return f"{self.action}_{self.status}"


@dataclass(frozen=True)
class PendingAction:
    """An action started on a record and not finished yet: what it will record when done."""

    action: str
    traversal: str
    template: str | None = None
    properties: Mapping[str, Any] | None = None
    requires: frozenset[str] = frozenset()
    deletion_policy: str = "Delete"
    # False until the plugin's step returned and its cookie was recorded.
    started: bool = False
    cookie: Any = None


@dataclass(frozen=True)
class ResourceRecord:
    """One version of one logical resource (a replacement is another record)."""

    id: str
    stack: str
    name: str
    type: str
    created_at: float = 0.0
    # Revision whose definition was applied last (for an INIT record: the one it was made for).
    template: str | None = None
    action: str = INIT
    status: str = COMPLETE
    status_reason: str = ""
    # Record ids this one depends on (old and new ones while an update runs).
    requires: frozenset[str] = frozenset()
    replaces: str | None = None
    replaced_by: str | None = None
    # Physical id (Heat's resource_id) and what get_resource gives.
    resource_id: str | None = None
    reference_id: str | None = None
    # Attributes read when its update node last finished (only the referenced ones).
    attributes: Mapping[str, Any] = field(default_factory=dict)
    # Resolved properties last applied (None until created).
    properties: Mapping[str, Any] | None = None
    deletion_policy: str = "Delete"
    # The plugin's persisted data (Heat's data_set).
    data: Mapping[str, Any] = field(default_factory=dict)
    # The traversal whose action is in flight, and the engine (operator replica) carrying
    # it out: while that engine is alive no other one resumes the action; once it is
    # dead, the first to write its own id here takes the action over (Heat's engine_id
    # lock and engine liveness check).
    lock: str | None = None
    holder: str | None = None
    pending: PendingAction | None = None
    # The traversal whose update node last finished on this record.
    converged: str | None = None
    version: int = 0
    # Someone outside the engine asked for the record to go (on Kubernetes: a
    # deletionTimestamp, held by the record's finalizer). It is never reused: its
    # next update node replaces it, and its cleanup node then deletes it.
    deletion_requested: bool = False

    @property
    def phase(self) -> str:
        """Heat's resource state, e.g. CREATE_COMPLETE."""
        return f"{self.action}_{self.status}"


class Store(Protocol):
    """What the engine needs from wherever its state lives."""

    def create_stack(self, stack: StackRecord) -> StackRecord:
        """Store a new stack; raise AlreadyExists."""
        ...

    def get_stack(self, name: str) -> StackRecord | None:
        """The stack called `name`, if any."""
        ...

    def is_current(self, name: str, traversal: str) -> bool:
        """Whether `traversal` is the stack's traversal as stored now (never from a cache).

        The fence a step passes before it acts: a step of a traversal that a newer
        one replaced must not start anything.
        """
        ...

    def update_stack(self, stack: StackRecord) -> StackRecord:
        """Compare-and-set on stack.version; return the stored record (version + 1)."""
        ...

    def stack_sync_point(self, name: str) -> Mapping[str, SyncEntry]:
        """The stack-complete sync point."""
        ...

    def push_stack_sync_point(
        self, name: str, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        """Merge one key into the stack-complete sync point; return the whole sync point."""
        ...

    def put_template(self, revision: TemplateRevision) -> None:
        """Store an immutable template revision."""
        ...

    def get_template(self, revision_id: str) -> TemplateRevision:
        """A stored revision; raise NotFound."""
        ...

    def create_resource(self, record: ResourceRecord) -> ResourceRecord:
        """Store a new record; raise AlreadyExists if its id is taken."""
        ...

    def create_resources(
        self, records: Sequence[ResourceRecord], *, exist_ok: bool = False
    ) -> list[ResourceRecord]:
        """Store new records, in `records`' order or at once; raise as create_resource does,
        except that with `exist_ok` a record whose id is taken is taken as made (by a peer
        making the very same record)."""
        ...

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        """The record, if it still exists."""
        ...

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        """Every record of a stack."""
        ...

    def update_resource(
        self, record: ResourceRecord, own_push: OwnPush | None = None
    ) -> ResourceRecord:
        """Compare-and-set on record.version; return the stored record (version + 1).

        `own_push` goes into the record's own sync point in the same write.
        """
        ...

    def delete_resource(self, record: ResourceRecord) -> None:
        """Compare-and-set delete on record.version (its sync points go with it)."""
        ...

    def sync_point(self, record_id: str, is_update: bool) -> Mapping[str, SyncEntry]:
        """The sync point of a record's update or cleanup node (empty if none)."""
        ...

    def push(
        self, record_id: str, is_update: bool, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        """Merge one key into a node's sync point; return it whole. Raise NotFound."""
        ...


@dataclass(frozen=True)
class Write:
    """One write, as the in-memory store logs it: its kind and the one thing it touched."""

    kind: str
    key: str


class InMemoryStore:
    """The store in a dict, for the simulator and unit tests. Thread-safe, counts writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stacks: dict[str, StackRecord] = {}
        self._stack_sync: dict[str, dict[str, SyncEntry]] = {}
        self._templates: dict[str, TemplateRevision] = {}
        self._resources: dict[str, ResourceRecord] = {}
        self._by_stack: dict[str, dict[str, None]] = {}
        self._sync: dict[tuple[str, bool], dict[str, SyncEntry]] = {}
        self.writes: Counter[str] = Counter()
        self.write_log: list[Write] = []
        self.log_writes = False

    def _count(self, kind: str, key: str) -> None:
        self.writes[kind] += 1
        if self.log_writes:
            self.write_log.append(Write(kind, key))

    @property
    def total_writes(self) -> int:
        """All writes so far."""
        return sum(self.writes.values())

    def create_stack(self, stack: StackRecord) -> StackRecord:
        with self._lock:
            if stack.name in self._stacks:
                raise AlreadyExists(f"stack {stack.name!r} exists")
            self._count("stack", stack.name)
            stored = replace(stack, version=1)
            self._stacks[stack.name] = stored
            self._stack_sync[stack.name] = {}
            return stored

    def get_stack(self, name: str) -> StackRecord | None:
        return self._stacks.get(name)

    def is_current(self, name: str, traversal: str) -> bool:
        stack = self._stacks.get(name)
        return stack is not None and stack.traversal == traversal

    def update_stack(self, stack: StackRecord) -> StackRecord:
        with self._lock:
            current = self._stacks.get(stack.name)
            if current is None:
                raise NotFound(f"stack {stack.name!r}")
            if current.version != stack.version:
                raise Conflict(f"stack {stack.name!r} changed")
            self._count("stack", stack.name)
            stored = replace(stack, version=stack.version + 1)
            self._stacks[stack.name] = stored
            return stored

    def drop_stack(self, name: str) -> None:
        """Forget a stack (not part of Store: on Kubernetes, the Stack object going away once
        its delete is complete; the simulator's nested stacks do this)."""
        with self._lock:
            if self._stacks.pop(name, None) is not None:
                self._count("stack", name)
            self._stack_sync.pop(name, None)

    def stack_names(self) -> list[str]:
        """Every stack's name, in the order they were created."""
        return list(self._stacks)

    def stack_sync_point(self, name: str) -> Mapping[str, SyncEntry]:
        return dict(self._stack_sync.get(name, {}))

    def push_stack_sync_point(
        self, name: str, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        with self._lock:
            if name not in self._stacks:
                raise NotFound(f"stack {name!r}")
            self._count("stack_push", f"{name}/{sender}")
            sync = self._stack_sync[name]
            sync[sender] = entry
            return dict(sync)

    def put_template(self, revision: TemplateRevision) -> None:
        with self._lock:
            if revision.id in self._templates:
                raise AlreadyExists(f"template {revision.id!r} exists")
            self._count("template", revision.id)
            self._templates[revision.id] = revision

    def get_template(self, revision_id: str) -> TemplateRevision:
        try:
            return self._templates[revision_id]
        except KeyError:
            raise NotFound(f"template {revision_id!r}") from None

    def create_resource(self, record: ResourceRecord) -> ResourceRecord:
        with self._lock:
            if record.id in self._resources:
                raise AlreadyExists(f"resource {record.id!r} exists")
            self._count("resource", record.id)
            stored = replace(record, version=0)
            self._resources[record.id] = stored
            self._by_stack.setdefault(record.stack, {})[record.id] = None
            return stored

    def create_resources(
        self, records: Sequence[ResourceRecord], *, exist_ok: bool = False
    ) -> list[ResourceRecord]:
        return [create_if_new(self, record, exist_ok) for record in records]

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        return self._resources.get(record_id)

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        return [self._resources[rid] for rid in self._by_stack.get(stack, {})]

    def update_resource(
        self, record: ResourceRecord, own_push: OwnPush | None = None
    ) -> ResourceRecord:
        with self._lock:
            current = self._resources.get(record.id)
            if current is None:
                raise NotFound(f"resource {record.id!r}")
            if current.version != record.version:
                raise Conflict(f"resource {record.id!r} changed")
            self._count("resource", record.id)
            stored = replace(record, version=record.version + 1)
            self._resources[record.id] = stored
            if own_push is not None:
                sync = self._sync.setdefault((record.id, own_push.is_update), {})
                sync[own_push.sender] = own_push.entry
            return stored

    def delete_resource(self, record: ResourceRecord) -> None:
        with self._lock:
            current = self._resources.get(record.id)
            if current is None:
                raise NotFound(f"resource {record.id!r}")
            if current.version != record.version:
                raise Conflict(f"resource {record.id!r} changed")
            self._count("resource", record.id)
            del self._resources[record.id]
            self._by_stack[record.stack].pop(record.id, None)
            self._sync.pop((record.id, True), None)
            self._sync.pop((record.id, False), None)

    def sync_point(self, record_id: str, is_update: bool) -> Mapping[str, SyncEntry]:
        return dict(self._sync.get((record_id, is_update), {}))

    def push(
        self, record_id: str, is_update: bool, sender: str, entry: SyncEntry
    ) -> Mapping[str, SyncEntry]:
        with self._lock:
            if record_id not in self._resources:
                raise NotFound(f"resource {record_id!r}")
            kind = "update" if is_update else "cleanup"
            self._count("push", f"{kind}:{record_id}/{sender}")
            sync = self._sync.setdefault((record_id, is_update), {})
            sync[sender] = entry
            return dict(sync)


def create_if_new(store: Store, record: ResourceRecord, exist_ok: bool) -> ResourceRecord:
    """`store.create_resource(record)`; with `exist_ok`, a record whose id is taken already
    is no error (the record as given is returned)."""
    try:
        return store.create_resource(record)
    except AlreadyExists:
        if not exist_ok:
            raise
        return record
