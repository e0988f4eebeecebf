"""The exceptions of the plugin API: how a resource type says an action failed.

`ResourceFailure` fails the resource with its message (shown in status and
Events). The Kubernetes API's refusals reach a type as `ObjectRejected`, and
the two refusals a type acts on have their own class, so a type never reads
HTTP status codes: `ObjectImmutable` (the change needs a new object) and
`ObjectConflict` (another field manager owns what an unforced apply touched).
The Kubernetes layer decides which one a refusal is. `Unavailable` is no
refusal: the question could not be answered now, and the step is retried.
"""

from __future__ import annotations


class ResourceFailure(Exception):
    """An action of a resource failed; the message says why (shown in status and events)."""


class ObjectRejected(ResourceFailure):
    """The Kubernetes API refused a request about an object.

    `reason` is the API's reason (e.g. Forbidden, Invalid, Conflict); the
    message names the object and says why.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class ObjectImmutable(ObjectRejected):
    """The change touches a field that cannot change once the object exists."""


class ObjectConflict(ObjectRejected):
    """An apply without force met fields that another field manager owns."""


class Unavailable(Exception):
    """What a type asked could not be answered now (the API server or its storage
    is down, or it asks the client to slow down): no failure of the resource. The
    step is tried again later; the action stays as it was."""


class UnknownResourceType(LookupError):
    """No resource type is registered under this name."""
