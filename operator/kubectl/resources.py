"""`kubectl convergence resources STACK`: a stack's resources (`openstack stack resource list`).

One row per StackResource (a resource being replaced has two: the old record
and its replacement): logical name, record, type, phase, physical id, the
record that replaces it, and the reason of its last state.
"""

from __future__ import annotations

import argparse
from typing import Any

from convergence.operator.engine.store import ResourceRecord
from convergence.operator.kubectl import output, snapshot
from convergence.operator.kubectl.client import target

HEADERS = ("RESOURCE", "RECORD", "TYPE", "PHASE", "PHYSICAL ID", "REPLACED BY", "REASON")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resources",
        help="list a stack's resources (openstack stack resource list)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the Stack's name")
    output.add_format(parser)
    parser.set_defaults(func=run)


def as_data(record: ResourceRecord) -> dict[str, Any]:
    """One resource for -o json|yaml."""
    return {
        "resource": record.name,
        "record": record.id,
        "type": record.type,
        "phase": record.phase,
        "physicalId": record.resource_id,
        "replaces": record.replaces,
        "replacedBy": record.replaced_by,
        "reason": record.status_reason,
    }


def row(record: ResourceRecord) -> list[str]:
    return [
        record.name,
        snapshot.short(record.id),
        record.type,
        record.phase,
        record.resource_id or "",
        snapshot.short(record.replaced_by) if record.replaced_by else "",
        record.status_reason,
    ]


def run(args: argparse.Namespace) -> int:
    found = snapshot.read(target(args), args.stack)
    records = found.ordered()
    if args.output != output.TABLE:
        output.emit(output.dump([as_data(r) for r in records], args.output))
    elif not records:
        output.emit(f"No resources in stack {found.name} (namespace {found.namespace}).\n")
    else:
        output.emit(output.table(HEADERS, [row(r) for r in records]))
    return 0
