"""One controller per object kind: Stack, StackResource, StackPreview, and the drift check of
Stacks at rest.

A controller decides and acts through the engine, the store and `status.py`;
it never imports kopf. It says "run me again after a while" by raising
`Requeue`, and "this spec cannot work until it changes" by raising `Rejected`;
`handlers.py`, the thin kopf shell, turns these into kopf's errors. Events
about a request (cancel, rollback, an invalid template) go through a `Notify`
the shell binds to kopf's own Event poster for the object it was called for.
"""

from __future__ import annotations

from collections.abc import Callable

# (Event type, reason, message): an Event about the object being reconciled.
Notify = Callable[[str, str, str], None]


class Requeue(Exception):
    """Run the same request again after `delay` seconds (not an error)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Rejected(Exception):
    """The spec cannot be carried out as it is: nothing is retried until it changes."""
