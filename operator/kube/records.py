"""The engine's records as Kubernetes object bodies, and back: pure functions, no I/O.

Status layout (camelCase, as Kubernetes users expect; `None` is an absent field):

Stack `status`, engine part:
  version                 compare-and-set counter (StackRecord.version)
  stackId                 StackRecord.uid (the id resource types see)
  traversal               current traversal id
  currentRevision         ControllerRevision of StackRecord.template
  lastCompletedRevision   ControllerRevision of StackRecord.prev_template
  phase, statusReason     action_status (e.g. UPDATE_IN_PROGRESS) and its reason
  ready                   in service
  graphRef                the ConfigMap holding the traversal's graph, immutable,
                          `data.graph` = {node key: [node keys it waits for]}
  disableRollback, timeoutSeconds, startedAt, outputs
  syncPoints.complete     the stack-complete sync point {sender node: entry}, used only
                          when the traversal has no sync map: the ConfigMap
                          `sync-<traversal>` made with its graph, `data` = {sender node
                          with "_" for ":": entry as JSON}, where roots push otherwise

StackResource `spec` is the record's identity: stack, resource (logical name),
type, replaces. Its `status`, engine part:
  version, createdAt, templateRevision, phase, statusReason, requires (sorted),
  replacedBy, resourceId, referenceId, attributes, properties, deletionPolicy,
  pluginData, lock, converged, pending {action, traversal, templateRevision,
  properties, requires, deletionPolicy, started, cookie}
  syncPoints.update / syncPoints.cleanup   the node sync points {sender node: entry}

Action and status are kept as one `phase`, the form users read, and split on
its first underscore (no Heat action has one). Conditions, observedGeneration
and resource counts belong to the handlers; nothing here writes them.

Absent values are written as JSON null: the API server prunes a null for a
field its schema does not mark nullable, so the field disappears, and a JSON
patch needs no knowledge of which fields exist. Inside free-form data
(attributes, outputs, properties, cookies) a null is kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.graph import Graph
from convergence.operator.engine.store import (
    COMPLETE,
    INIT,
    NodeData,
    PendingAction,
    ResourceRecord,
    StackRecord,
    SyncEntry,
)

# The stack-complete sync point's key in the Stack's status.syncPoints.
STACK_COMPLETE = "complete"


def sync_point_key(is_update: bool) -> str:
    """Key of an update or cleanup node's sync point in a StackResource's status.syncPoints."""
    return "update" if is_update else "cleanup"


def phase(action: str, status: str) -> str:
    """Heat's state as one word, e.g. CREATE_IN_PROGRESS."""
    if "_" in action:
        raise ValueError(f"an action cannot contain '_': {action!r}")
    return f"{action}_{status}"


def split_phase(value: str) -> tuple[str, str]:
    """(action, status) of a phase."""
    action, _, status = value.partition("_")
    return action, status


def status_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's status (empty if it has none yet)."""
    status = body.get("status")
    return status if isinstance(status, Mapping) else {}


def engine_version(body: Mapping[str, Any]) -> int:
    """The engine's compare-and-set version of an object (0: never written by the engine)."""
    return int(status_of(body).get("version") or 0)


def _float(value: Any) -> float | None:
    # The API server gives whole floats back as integers.
    return None if value is None else float(value)


# -- graph ---------------------------------------------------------------------------------------


def graph_to_status(graph: Graph) -> dict[str, list[str]]:
    """The graph as {node key: sorted keys of the nodes it waits for}."""
    requirements: dict[str, list[str]] = {}
    for node_key, required_key in graph.to_edges():
        needs = requirements.setdefault(node_key, [])
        if required_key is not None:
            needs.append(required_key)
    return requirements


def graph_from_status(raw: Mapping[str, Any] | None) -> Graph:
    """Inverse of graph_to_status()."""
    edges: list[tuple[str, str | None]] = []
    for node_key, required in (raw or {}).items():
        if not required:
            edges.append((node_key, None))
        edges.extend((node_key, required_key) for required_key in required)
    return Graph.from_edges(edges)


# -- sync points ---------------------------------------------------------------------------------


def sync_entry_to_status(entry: SyncEntry) -> dict[str, Any]:
    """A sync point entry as stored."""
    return entry.to_dict()


def sync_entry_from_status(raw: Mapping[str, Any]) -> SyncEntry:
    """A stored sync point entry (pruned nulls read as None)."""
    data = raw.get("data")
    if not data:
        return SyncEntry(str(raw["traversal"]))
    return SyncEntry(
        str(raw["traversal"]),
        NodeData(
            record_id=str(data.get("recordId", "")),
            name=str(data.get("name", "")),
            reference_id=data.get("referenceId"),
            attributes=dict(data.get("attributes") or {}),
        ),
    )


def sync_point_from_status(raw: Mapping[str, Any] | None) -> dict[str, SyncEntry]:
    """A stored sync point {sender: entry}."""
    return {sender: sync_entry_from_status(entry) for sender, entry in (raw or {}).items()}


# -- stacks --------------------------------------------------------------------------------------


def stack_to_status(stack: StackRecord) -> dict[str, Any]:
    """The engine's fields of a Stack's status (None: absent)."""
    return {
        "version": stack.version,
        "stackId": stack.uid,
        "traversal": stack.traversal,
        "currentRevision": stack.template,
        "lastCompletedRevision": stack.prev_template,
        "phase": phase(stack.action, stack.status),
        "statusReason": stack.status_reason,
        "ready": stack.ready,
        "disableRollback": stack.disable_rollback,
        "timeoutSeconds": stack.timeout,
        "startedAt": stack.started_at,
        "outputs": dict(stack.outputs),
        "desired": stack.desired,
    }


def stack_from_body(body: Mapping[str, Any]) -> StackRecord | None:
    """The engine's record of a Stack object; None if the engine never initialised it."""
    status = status_of(body)
    if not status.get("version"):
        return None
    action, state = split_phase(str(status.get("phase") or f"{INIT}_{COMPLETE}"))
    return StackRecord(
        name=str(body["metadata"]["name"]),
        uid=str(status.get("stackId", "")),
        traversal=str(status.get("traversal", "")),
        template=status.get("currentRevision"),
        prev_template=status.get("lastCompletedRevision"),
        action=action,
        status=state,
        status_reason=str(status.get("statusReason", "")),
        ready=bool(status.get("ready", False)),
        # Stacks written before graphs moved to their own ConfigMap have it here;
        # the store replaces it with the one `graphRef` names.
        graph=graph_from_status(status.get("graph")),
        disable_rollback=bool(status.get("disableRollback", True)),
        timeout=_float(status.get("timeoutSeconds")),
        started_at=_float(status.get("startedAt")) or 0.0,
        outputs=dict(status.get("outputs") or {}),
        version=int(status["version"]),
        desired=status.get("desired"),
    )


# -- resources -----------------------------------------------------------------------------------


def resource_spec(record: ResourceRecord) -> dict[str, Any]:
    """A StackResource's spec: the record's identity, which never changes."""
    spec: dict[str, Any] = {"stack": record.stack, "resource": record.name, "type": record.type}
    if record.replaces is not None:
        spec["replaces"] = record.replaces
    # The record as first written, read while the engine has written no status yet.
    spec["createdAt"] = record.created_at
    if record.template is not None:
        spec["templateRevision"] = record.template
    spec["deletionPolicy"] = record.deletion_policy
    return spec


def pending_to_status(pending: PendingAction | None) -> dict[str, Any] | None:
    """The action in flight as stored (None: absent)."""
    if pending is None:
        return None
    return {
        "action": pending.action,
        "traversal": pending.traversal,
        "templateRevision": pending.template,
        "properties": None if pending.properties is None else dict(pending.properties),
        "requires": sorted(pending.requires),
        "deletionPolicy": pending.deletion_policy,
        "started": pending.started,
        "cookie": pending.cookie,
    }


def pending_from_status(raw: Mapping[str, Any] | None) -> PendingAction | None:
    """Inverse of pending_to_status()."""
    if raw is None:
        return None
    properties = raw.get("properties")
    return PendingAction(
        action=str(raw["action"]),
        traversal=str(raw["traversal"]),
        template=raw.get("templateRevision"),
        properties=None if properties is None else dict(properties),
        requires=frozenset(raw.get("requires") or ()),
        deletion_policy=str(raw.get("deletionPolicy", "Delete")),
        started=bool(raw.get("started", False)),
        cookie=raw.get("cookie"),
    )


def resource_to_status(record: ResourceRecord) -> dict[str, Any]:
    """The engine's fields of a StackResource's status (None: absent)."""
    return {
        "version": record.version,
        "createdAt": record.created_at,
        "templateRevision": record.template,
        "phase": phase(record.action, record.status),
        "statusReason": record.status_reason,
        "requires": sorted(record.requires),
        "replacedBy": record.replaced_by,
        "resourceId": record.resource_id,
        "referenceId": record.reference_id,
        "attributes": dict(record.attributes),
        "properties": None if record.properties is None else dict(record.properties),
        "deletionPolicy": record.deletion_policy,
        "pluginData": dict(record.data),
        "lock": record.lock,
        "lockHolder": record.holder,
        "converged": record.converged,
        "pending": pending_to_status(record.pending),
    }


def resource_from_body(body: Mapping[str, Any]) -> ResourceRecord:
    """The engine's record of a StackResource object.

    An object is created without status (the API server ignores a status in a
    create): until the engine first writes one, it reads as an INIT record at
    version 0 with the fields its spec was created with.
    """
    spec = body["spec"]
    status = status_of(body)
    if engine_version(body) == 0:
        status = {
            "createdAt": spec.get("createdAt"),
            "templateRevision": spec.get("templateRevision"),
            "deletionPolicy": spec.get("deletionPolicy", "Delete"),
            **status,
        }
    action, state = split_phase(str(status.get("phase") or f"{INIT}_{COMPLETE}"))
    properties = status.get("properties")
    return ResourceRecord(
        id=str(body["metadata"]["name"]),
        stack=str(spec["stack"]),
        name=str(spec["resource"]),
        type=str(spec["type"]),
        created_at=_float(status.get("createdAt")) or 0.0,
        template=status.get("templateRevision"),
        action=action,
        status=state,
        status_reason=str(status.get("statusReason", "")),
        requires=frozenset(status.get("requires") or ()),
        replaces=spec.get("replaces"),
        replaced_by=status.get("replacedBy"),
        resource_id=status.get("resourceId"),
        reference_id=status.get("referenceId"),
        attributes=dict(status.get("attributes") or {}),
        properties=None if properties is None else dict(properties),
        deletion_policy=str(status.get("deletionPolicy", "Delete")),
        data=dict(status.get("pluginData") or {}),
        lock=status.get("lock"),
        holder=status.get("lockHolder"),
        pending=pending_from_status(status.get("pending")),
        converged=status.get("converged"),
        version=engine_version(body),
        deletion_requested=bool(body["metadata"].get("deletionTimestamp")),
    )
