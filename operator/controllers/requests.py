"""Requests made by annotating a Stack (cancel, rollback, retry): which are new, and consuming them.

A user asks for an operation by annotating the Stack, by hand or with the
kubectl plugin:

    kubectl annotate --overwrite stack NAME convergence.dev/cancel=rollback   # or =no-rollback
    kubectl annotate --overwrite stack NAME convergence.dev/rollback="$(date +%s)"
    kubectl annotate --overwrite stack NAME convergence.dev/retry="$(date +%s)"

The operator carries a request out, records it in the Stack's status (`handledCancel`:
the value; `handledCancelTraversal`: the stack's traversal once it was handled; the same
for Rollback and Retry), and then *consumes* it: takes the annotation off, if it still
has that value (a newer value is a newer request). So the same command later is a new
request, as users of Argo CD's refresh annotation know it: an annotation left in place
would make it no change at all, which nobody could see, and would cancel every later
update all over again.

A value is a new request unless the status says it was handled already *and* the stack
is still at the traversal it was handled at: that is an annotation the operator had not
yet taken off when it stopped (nothing has happened since; a second cancel of one
operation could only be refused). An operator older than this rule recorded only the
value, left the annotation in place and acted on each value once: such a value
(`handled*Traversal` absent) is handled already, and is consumed without acting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convergence.operator.kube.names import GROUP, RETRY_ANNOTATION
from convergence.operator.kube.records import status_of


@dataclass(frozen=True)
class RequestKind:
    """One kind of request: its annotation and the status field of the value handled last."""

    annotation: str
    handled: str

    @property
    def handled_traversal(self) -> str:
        """The status field of the traversal the stack was at once the request was handled."""
        return f"{self.handled}Traversal"

    def marker(self, value: str, traversal: str) -> dict[str, str]:
        """The status fields that say `value` was handled, the stack then at `traversal`."""
        return {self.handled: value, self.handled_traversal: traversal}


CANCEL = RequestKind(f"{GROUP}/cancel", "handledCancel")
ROLLBACK = RequestKind(f"{GROUP}/rollback", "handledRollback")
RETRY = RequestKind(RETRY_ANNOTATION, "handledRetry")
KINDS = (CANCEL, RETRY, ROLLBACK)
CANCEL_VALUES = ("rollback", "no-rollback")


def pending(
    kind: RequestKind,
    annotations: Mapping[str, str],
    status: Mapping[str, Any],
    is_current: Callable[[str], bool],
) -> str | None:
    """The value of `kind`'s annotation when it is a request to carry out (see the module).

    `is_current` says whether a traversal is the stack's current one (the store's
    fence); it is asked only about a value handled already.
    """
    value = annotations.get(kind.annotation)
    if value is None or value != status.get(kind.handled):
        return value
    handled_at = status.get(kind.handled_traversal)
    if handled_at is None:
        return None  # handled by an older operator, which acted on each value once
    return None if is_current(str(handled_at)) else value


def handled(kind: RequestKind, body: Mapping[str, Any], value: str) -> bool:
    """Whether a Stack's body shows request `value` of `kind` carried out: recorded in its
    status and its annotation consumed (what a client that waits for it looks for)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(kind.annotation) != value and status_of(body).get(kind.handled) == value
