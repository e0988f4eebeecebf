"""`kubectl convergence trace STACK`: the stack, its StackResources and what they manage, as a tree.

Like `crossplane beta trace`: one line per object with its phase, whether it
is ready and why not. Under each StackResource, the physical objects it
manages: for Kubernetes::Object the object it applied (found by the
reference in its `status.pluginData.object`, ready by the same kstatus rules
the type waits on); for other types the ConfigMaps and Secrets labelled with
the record (a TestResource's ConfigMap, a RandomString's Secret). Objects the
user may not read are left out; one that should exist and does not shows as
not found.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    ResourceFailure,
    label_value,
)
from convergence.operator.engine.store import COMPLETE, IN_PROGRESS, ResourceRecord
from convergence.operator.kube.api import ApiError, as_object, if_present, request
from convergence.operator.kube.names import STACK_KIND
from convergence.operator.kube.objects import Discovery
from convergence.operator.kube.reality import PHYSICAL_NAME_ANNOTATION
from convergence.operator.kubectl import output, snapshot
from convergence.operator.kubectl.client import Target, target
from convergence.reconcilers.kubernetes_readiness import readiness

HEADERS = ("NAME", "RESOURCE", "PHASE", "READY", "STATUS")


@dataclass
class Branch:
    """One object of the tree and what hangs under it."""

    kind: str
    name: str
    # None for a cluster-scoped object.
    namespace: str | None = None
    resource: str = ""
    phase: str = ""
    ready: str = ""
    status: str = ""
    children: list[Branch] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        """The branch for -o json|yaml."""
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "resource": self.resource or None,
            "phase": self.phase or None,
            "ready": self.ready or None,
            "status": self.status or None,
            "children": [child.as_data() for child in self.children],
        }


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="a tree of the stack, its StackResources and the objects they manage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the Stack's name")
    output.add_format(parser)
    parser.set_defaults(func=run)


def _ready(found: Mapping[str, Any] | None) -> str:
    return str(found.get("status", "Unknown")) if found is not None else "Unknown"


def _message(found: Mapping[str, Any] | None) -> str:
    return str(found.get("message") or found.get("reason") or "") if found is not None else ""


def live_branch(live: Mapping[str, Any]) -> Branch:
    """A physical object found live, with its readiness."""
    metadata = live.get("metadata") or {}
    state = readiness(live)
    return Branch(
        kind=str(live.get("kind", "")),
        name=str(metadata.get("name", "")),
        namespace=metadata.get("namespace") or None,
        ready="True" if state.ready else "False",
        status=("failed: " if state.failed else "") + state.message,
    )


class PhysicalObjects:
    """The physical objects of a stack's records, read with the user's client."""

    def __init__(self, where: Target, stack: str) -> None:
        self.api: ApiClient = where.api
        self.namespace = where.namespace
        self.discovery = Discovery(where.api)
        self.labelled = self._labelled(stack)

    def _labelled(self, stack: str) -> list[dict[str, Any]]:
        """The ConfigMaps and Secrets the stack's resource types made (those the user may list)."""
        core = CoreV1Api(self.api)
        selector = f"{STACK_LABEL}={label_value(stack)},{MANAGED_BY_LABEL}={MANAGED_BY}"
        found: list[dict[str, Any]] = []
        for kind, lister in (
            ("ConfigMap", core.list_namespaced_config_map),
            ("Secret", core.list_namespaced_secret),
        ):
            try:
                listed = lister(self.namespace, label_selector=selector)
            except ApiException as exc:
                if exc.status == 403:
                    continue  # not the user's to see
                raise
            for item in listed.items:
                body = self.api.sanitize_for_serialization(item)  # type: ignore[no-untyped-call]
                body.pop("data", None)  # never kept, never shown: a Secret's values
                found.append({**body, "apiVersion": "v1", "kind": kind})
        return found

    def of(self, record: ResourceRecord) -> Iterator[Branch]:
        """The branches of what `record` manages."""
        applied = record.data.get("object")
        if isinstance(applied, Mapping):
            yield self._applied(applied)
            return
        for body in self.labelled:
            metadata = body.get("metadata") or {}
            labels = metadata.get("labels") or {}
            annotations = metadata.get("annotations") or {}
            if labels.get(STACK_RESOURCE_LABEL) == label_value(record.id) or (
                record.resource_id is not None
                and STACK_RESOURCE_LABEL not in labels
                and annotations.get(PHYSICAL_NAME_ANNOTATION) == record.resource_id
            ):
                yield live_branch(body)

    def _applied(self, applied: Mapping[str, Any]) -> Branch:
        """The object a Kubernetes::Object applied, read live."""
        kind, name = str(applied.get("kind")), str(applied.get("name"))
        namespace = applied.get("namespace")
        missing = Branch(kind, name, namespace or None, ready="False")
        try:
            resource = self.discovery.resource(str(applied.get("apiVersion")), kind)
            live = if_present(request, self.api, "GET", resource.path(namespace, name))
        except ResourceFailure as exc:
            missing.status = str(exc)
            return missing
        except ApiError as exc:
            missing.ready, missing.status = "Unknown", f"cannot read it: {exc}"
            return missing
        if live is None:
            missing.status = "not found"
            return missing
        return live_branch(as_object(live))


def resource_branch(found: snapshot.Snapshot, record: ResourceRecord) -> Branch:
    """A StackResource: phase, Ready condition, and what it waits for or why it failed."""
    body = found.bodies[record.id]
    ready = snapshot.condition(body, "Ready")
    waiting = str(record.data.get("waitingFor") or "")
    # A completed resource's reason ("state changed") tells nothing in a tree.
    status = "" if record.status == COMPLETE else record.status_reason
    status = status or (waiting if record.status == IN_PROGRESS else "")
    if not status and ready is not None and ready.get("status") != "True":
        status = _message(ready)
    if record.replaced_by:
        status = f"replaced by {snapshot.short(record.replaced_by)}" + (
            f"; {status}" if status else ""
        )
    return Branch(
        kind="StackResource",
        name=record.id,
        namespace=found.namespace,
        resource=record.name,
        phase=record.phase,
        ready=_ready(ready),
        status=status,
    )


def tree(where: Target, found: snapshot.Snapshot) -> Branch:
    """The stack's tree."""
    status = found.status
    ready = snapshot.condition(found.body, "Ready")
    root = Branch(
        kind=STACK_KIND,
        name=found.name,
        namespace=found.namespace,
        phase=str(status.get("phase") or ""),
        ready=_ready(ready),
        status=str(status.get("statusReason") or _message(ready)),
    )
    physical = PhysicalObjects(where, found.name)
    for record in found.ordered():
        branch = resource_branch(found, record)
        branch.children.extend(physical.of(record))
        root.children.append(branch)
    return root


def rows(branch: Branch, home: str, lead: str = "", tail: str = "") -> Iterator[list[str]]:
    """The tree as table rows, the NAME column drawn with box characters; objects outside
    the stack's namespace `home` are named with their namespace."""
    where = f"{branch.namespace}/" if branch.namespace not in (None, home) else ""
    name = snapshot.object_name(branch.name) if branch.kind == "StackResource" else branch.name
    yield [f"{lead}{branch.kind}/{where}{name}", branch.resource, branch.phase, branch.ready,
           branch.status]  # fmt: skip
    for i, child in enumerate(branch.children):
        last = i == len(branch.children) - 1
        yield from rows(
            child, home, tail + ("└─ " if last else "├─ "), tail + ("   " if last else "│  ")
        )


def run(args: argparse.Namespace) -> int:
    where = target(args)
    root = tree(where, snapshot.read(where, args.stack))
    if args.output != output.TABLE:
        output.emit(output.dump(root.as_data(), args.output))
    else:
        output.emit(output.table(HEADERS, list(rows(root, where.namespace))))
    return 0
