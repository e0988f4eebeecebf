"""What belongs to the operator alone: kinds and objects that no Stack may name.

The operator keeps its own state in the API next to the objects of the stacks
it converges: Stacks and StackResources (its records), ControllerRevisions and
Secrets (template revisions), ConfigMaps (traversal graphs and sync points,
and the physical resources of TestResource) and Secrets (RandomString values).
It acts for Stack authors who may have none of its rights, so a Stack naming
one of these would make it a confused deputy: a forged StackResource is a
record of another stack whose cleanup would delete whatever it claims, and
reading a revision Secret or a RandomString Secret hands another stack's
values to whoever wrote the Stack.

So, whatever identity a stack acts with (the operator's or its ServiceAccount):
- `reserved_kind`: no stack object may be of the operator's own kinds, and
- `operator_state`: no stack reads an object holding the operator's state
  (through `spec.parametersFrom`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.plugin import STACK_LABEL
from convergence.operator.kube.names import GROUP, STACK_KIND
from convergence.operator.kube.reality import PHYSICAL_NAME_ANNOTATION

# (API group, kind) pairs reserved outside the operator's own API group: the
# template revisions are ControllerRevisions, which only workload controllers write.
_RESERVED_KINDS = frozenset({("apps", "ControllerRevision")})


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def reserved_kind(api_version: str, kind: str) -> str | None:
    """Why no stack may create, read, change or delete objects of this kind (None: it may)."""
    group = _group(api_version)
    if group == GROUP:
        return (
            f"{api_version} {kind} is one of the operator's own kinds: "
            "only the operator writes them, never a stack's resource"
        )
    if (group, kind) in _RESERVED_KINDS:
        return (
            f"{api_version} {kind} is reserved: the operator keeps its template revisions "
            "as ControllerRevisions, so no stack's resource may name one"
        )
    return None


def operator_state(body: Mapping[str, Any]) -> str | None:
    """What operator state the object `body` holds, if any (None: it is not the operator's).

    The operator's own objects are owned by a Stack (template revisions and their
    Secrets, traversal graphs and sync points) or carry the physical-name
    annotation (a TestResource's ConfigMap, a RandomString's Secret). Objects a
    stack's Kubernetes::Object made are owned by a StackResource and carry
    neither: those are the stack's products, which others may use.
    """
    metadata = body.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or ():
        if _group(str(owner.get("apiVersion", ""))) == GROUP and owner.get("kind") == STACK_KIND:
            return f"the operator's bookkeeping of stack {owner.get('name')!r}"
    annotations = metadata.get("annotations") or {}
    if PHYSICAL_NAME_ANNOTATION in annotations:
        labels = metadata.get("labels") or {}
        stack = labels.get(STACK_LABEL, "?")
        return f"a resource's private data of stack {stack!r}"
    return None
