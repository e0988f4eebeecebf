"""Kubernetes objects as a stack may touch them: where an object is, the client, its labels.

Types that manage Kubernetes objects (Kubernetes::Object) use an
`ObjectClient` acting with the stack's identity; requests the API refuses
raise `ObjectRejected` (see `errors`). Every object made for a stack, by the
operator or by a type, carries the same labels: which stack, which logical
resource and which resource record (StackResource) it belongs to, and that
convergence manages it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Label and annotation keys under this prefix, and owners in its API group, are the
# operator's own: it finds its records and revisions by them, so no stack sets them.
OPERATOR_PREFIX = "convergence.dev/"
STACK_LABEL = f"{OPERATOR_PREFIX}stack"
RESOURCE_LABEL = f"{OPERATOR_PREFIX}resource"
STACK_RESOURCE_LABEL = f"{OPERATOR_PREFIX}stack-resource"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "convergence"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_VALUE_MAX = 63
_HASH_CHARS = 10


def label_value(text: str) -> str:
    """`text` if a label can hold it, else a readable prefix and a hash of it (still unique).

    Label values are only for selecting: whoever selects by a shortened value
    filters on the exact value afterwards.
    """
    if len(text) <= _LABEL_VALUE_MAX and _LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    readable = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: _LABEL_VALUE_MAX - _HASH_CHARS - 1]
    readable = readable.strip("-_.")
    return f"{readable}-{digest}" if readable else digest


@dataclass(frozen=True)
class ObjectRef:
    """Where one Kubernetes object is: `namespace` is None for a cluster-scoped kind."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class ObjectClient(Protocol):
    """Kubernetes objects as one stack may touch them (Kubernetes::Object's world).

    Every request is made with the stack's identity: its ServiceAccount when
    the Stack names one (impersonated), else the operator's own. Requests the
    API refuses raise ObjectRejected (ObjectImmutable, ObjectConflict: see `errors`).
    """

    @property
    def namespace(self) -> str:
        """The stack's namespace: the default for namespaced objects."""
        ...

    @property
    def confined(self) -> bool:
        """Whether objects must stay in `namespace` (no cluster-scoped kinds, no other
        namespace); False when the stack's ServiceAccount's RBAC decides instead."""
        ...

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        """Whether the kind is namespaced; ResourceFailure when the API serves no such kind."""
        ...

    def apply(
        self, manifest: Mapping[str, Any], *, force: bool = True, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply under the field manager `convergence`; the live object after it.

        Without `force` an apply meeting fields owned by another manager is
        refused (ObjectConflict); `dry_run` changes nothing.
        """
        ...

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None if there is none."""
        ...

    def delete(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        """Delete the object (in the background); with `uid` only that incarnation of it.
        Missing, or another incarnation, is fine."""
        ...

    def owner_reference(self, record_id: str) -> dict[str, Any] | None:
        """An ownerReference tying an object to the resource record (None: records are
        not objects here, or it is gone); valid only in `namespace`."""
        ...


class ObjectClients(Protocol):
    """Gives each stack its ObjectClient (on Engine; None where there is no Kubernetes API)."""

    def for_stack(self, stack: str) -> ObjectClient:
        """The client of stack `stack`; cheap, and makes no request before it is used."""
        ...
