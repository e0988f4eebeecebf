"""`kubectl convergence events STACK`: the Events of the stack and of its resources, oldest first.

Events are ordered by when they last happened, to the second, and within a
second in the order the API stored them. A resource's Events are those of its
StackResources: the ones that exist now and the ones the current traversal's
graph still names (a record cleaned up in this traversal is gone, its Events
not yet). Events of a Stack of the same name that was deleted and made again
are left out (another uid).
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Iterable
from typing import Any

from kubernetes.client import CoreV1Api, CoreV1Event

from convergence.operator.kube.names import STACK_KIND
from convergence.operator.kubectl import output, snapshot
from convergence.operator.kubectl.client import target

RESOURCE_KIND = "StackResource"
HEADERS = ("TIME", "TYPE", "REASON", "OBJECT", "RESOURCE", "MESSAGE")
_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="the Events of a stack and its resources, in time order",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the Stack's name")
    output.add_format(parser)
    parser.set_defaults(func=run)


def when(event: CoreV1Event) -> datetime.datetime:
    """When an Event last happened (the newest of the times it carries)."""
    metadata = event.metadata
    for stamp in (
        event.last_timestamp,
        event.event_time,
        event.first_timestamp,
        metadata.creation_timestamp if metadata is not None else None,
    ):
        if isinstance(stamp, datetime.datetime):
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)
    return _EPOCH


def of_stack(found: snapshot.Snapshot, events: Iterable[CoreV1Event]) -> list[CoreV1Event]:
    """The Events about the stack and its records, in time order."""
    uid = (found.body.get("metadata") or {}).get("uid")
    record_ids = set(found.records) | {node.record_id for node in found.graph}
    mine = []
    for event in events:
        involved = event.involved_object
        if involved.kind == STACK_KIND and involved.name == found.name:
            if not involved.uid or involved.uid == uid:
                mine.append(event)
        elif involved.kind == RESOURCE_KIND and involved.name in record_ids:
            mine.append(event)
    # Timestamps have whole seconds: within one, the order the API stored them in decides.
    return sorted(mine, key=lambda e: (when(e), _stored_order(e)))


def _stored_order(event: CoreV1Event) -> int:
    """The etcd revision of the Event's last write (resourceVersion; 0 if it is not a number)."""
    version = event.metadata.resource_version if event.metadata is not None else None
    return int(version) if version and version.isdigit() else 0


def describe(found: snapshot.Snapshot, event: CoreV1Event) -> dict[str, Any]:
    """One Event for the table and for -o json|yaml."""
    involved = event.involved_object
    record = found.records.get(str(involved.name)) if involved.kind == RESOURCE_KIND else None
    return {
        "time": when(event).isoformat().replace("+00:00", "Z"),
        "type": event.type or "",
        "reason": event.reason or "",
        "object": {"kind": involved.kind, "name": involved.name},
        "resource": record.name if record is not None else None,
        "count": event.count or 1,
        "message": event.message or "",
    }


def row(described: dict[str, Any]) -> list[str]:
    involved = described["object"]
    kind, name = involved["kind"], involved["name"]
    name = name if kind == STACK_KIND else snapshot.object_name(name)
    return [
        described["time"],
        described["type"],
        described["reason"],
        f"{kind}/{name}",
        described["resource"] or "",
        described["message"],
    ]


def run(args: argparse.Namespace) -> int:
    where = target(args)
    found = snapshot.read(where, args.stack, graph=True)
    listed = CoreV1Api(where.api).list_namespaced_event(where.namespace)
    described = [describe(found, e) for e in of_stack(found, listed.items)]
    if args.output != output.TABLE:
        output.emit(output.dump(described, args.output))
    elif not described:
        output.emit(f"No events for stack {found.name} (namespace {found.namespace}).\n")
    else:
        output.emit(output.table(HEADERS, [row(d) for d in described]))
    return 0
