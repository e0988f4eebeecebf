"""A stack as the plugin shows it: its Stack, its StackResources and the current traversal's graph.

Read once per command with the user's client, decoded by the operator's own
readers (`kube.records`, `kube.graphs`), never parsed again here: what the
plugin shows is what the engine reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.graph import Graph
from convergence.operator.engine.plugin import STACK_LABEL, label_value
from convergence.operator.engine.record_ids import SHORT_ID_CHARS, is_uuid_id, short_id
from convergence.operator.engine.store import ResourceRecord, StackRecord
from convergence.operator.kube.api import NamespacedApi, is_not_found
from convergence.operator.kube.graphs import GraphGone, TraversalGraphs
from convergence.operator.kube.names import GROUP, STACK_RESOURCES, STACKS, VERSION
from convergence.operator.kube.records import resource_from_body, stack_from_body, status_of
from convergence.operator.kube.store import GRAPH_REF
from convergence.operator.kubectl.client import PluginError, Target


@dataclass(frozen=True)
class Snapshot:
    """What one read of a stack found."""

    namespace: str
    name: str
    body: Mapping[str, Any]
    # None while the operator has not initialised the stack (or never will: an invalid template).
    stack: StackRecord | None
    # StackResources by record id, as the engine's records and as bodies (conditions, times).
    records: dict[str, ResourceRecord]
    bodies: dict[str, Mapping[str, Any]]
    # The current traversal's graph (empty before the first traversal or once it is gone).
    graph: Graph = field(default_factory=Graph.empty)

    @property
    def status(self) -> Mapping[str, Any]:
        return status_of(self.body)

    def ordered(self) -> list[ResourceRecord]:
        """The records by logical name, then oldest first (a replacement after what it replaces)."""
        return sorted(self.records.values(), key=lambda r: (r.name, r.created_at, r.id))


def condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition `kind` of an object's status, if it has one."""
    for found in status_of(body).get("conditions") or []:
        if isinstance(found, Mapping) and found.get("type") == kind:
            return found
    return None


def short(record_id: str) -> str:
    """A record id as a table shows it: its last 8 characters (as `make demo` prints them),
    which are the short id of a readable id (`engine.record_ids`) and the end of a UUID
    one (an older operator's); any other name whole."""
    try:
        short_id(record_id)
    except ValueError:
        return record_id
    return record_id[-SHORT_ID_CHARS:]


def object_name(record_id: str) -> str:
    """A StackResource as `trace` and `events` name it: its name, which `kubectl get` takes;
    shortened as `short` does only where it is a UUID (an older operator's record)."""
    return short(record_id) if is_uuid_id(record_id) else record_id


def read_stack_body(target: Target, name: str) -> Mapping[str, Any]:
    """The Stack `name`; PluginError when there is none."""
    try:
        body = CustomObjectsApi(target.api).get_namespaced_custom_object(
            GROUP, VERSION, target.namespace, STACKS, name
        )
    except ApiException as exc:
        if is_not_found(exc):
            raise PluginError(
                f'stacks.{GROUP} "{name}" not found in namespace "{target.namespace}"'
            ) from exc
        raise
    return cast(Mapping[str, Any], body)


def read(target: Target, name: str, *, graph: bool = False) -> Snapshot:
    """The stack `name` and its StackResources; with `graph`, its current traversal's graph too."""
    body = read_stack_body(target, name)
    listed = CustomObjectsApi(target.api).list_namespaced_custom_object(
        GROUP,
        VERSION,
        target.namespace,
        STACK_RESOURCES,
        label_selector=f"{STACK_LABEL}={label_value(name)}",
    )
    # A shortened label value may be shared; the spec says whose a record is.
    bodies = {
        str(item["metadata"]["name"]): cast(Mapping[str, Any], item)
        for item in cast(Mapping[str, Any], listed).get("items", [])
        if (item.get("spec") or {}).get("stack") == name
    }
    stack = stack_from_body(body)
    found_graph = Graph.empty()
    ref = status_of(body).get(GRAPH_REF)
    if graph and ref:
        graphs = TraversalGraphs(NamespacedApi(target.api, target.namespace))
        # Gone: a newer traversal took over meanwhile, and the next read shows it.
        with contextlib.suppress(GraphGone):
            found_graph = graphs.graph(str(ref))
    elif graph and stack is not None:
        found_graph = stack.graph  # a Stack from before graphs had ConfigMaps of their own
    return Snapshot(
        namespace=target.namespace,
        name=name,
        body=body,
        stack=stack,
        records={record_id: resource_from_body(b) for record_id, b in bodies.items()},
        bodies=bodies,
        graph=found_graph,
    )
