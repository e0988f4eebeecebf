"""How engine identifiers become Kubernetes object names and API coordinates.

Record and revision ids name objects directly, so they are checked, never
rewritten: a rewritten id could no longer be found by the engine. A record id
is made to be a name a person reads (`<stack>-<logical name>-<short id>`, a
DNS-1123 label of at most 63 characters: `engine.record_ids`), so `kubectl get
stackresources` lists a stack's StackResources by resource; records made by
older operators are named by bare UUIDs, which are names as well, and keep them.
The labels every object of a stack carries are part of the plugin API
(`engine.plugin`), as types label their objects with them too.
"""

from __future__ import annotations

import hashlib
import re

GROUP = "convergence.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
STACK_KIND = "Stack"
STACKS = "stacks"
STACK_RESOURCES = "stackresources"
STACK_PREVIEWS = "stackpreviews"
# On every StackResource: its physical resource is deleted (or released) before the
# object goes, so deleting a StackResource by hand never leaks or loses it.
RESOURCE_FINALIZER = f"{GROUP}/physical-resource"
# A request to converge a Stack to its spec again (controllers/requests.py); the operator
# writes it on a FAILED nested stack whose parent updates it unchanged (kube/nested.py).
RETRY_ANNOTATION = f"{GROUP}/retry"

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MAX = 253
_HASH_CHARS = 10


def is_object_name(name: str) -> bool:
    """Whether `name` can name a namespaced object (a DNS-1123 subdomain)."""
    return len(name) <= _SUBDOMAIN_MAX and _SUBDOMAIN.match(name) is not None


def object_name(identifier: str, what: str) -> str:
    """`identifier` itself if it can name an object; ValueError naming `what` otherwise."""
    if not is_object_name(identifier):
        raise ValueError(
            f"{what} {identifier!r} cannot name a Kubernetes object "
            "(it must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')"
        )
    return identifier


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]


def subdomain_name(text: str) -> str:
    """`text` if it can name an object, else a lowercase, shortened form with a hash of it."""
    if is_object_name(text):
        return text
    # Dots go too: each dot-separated part would have to start and end alphanumeric.
    readable = re.sub(r"[^a-z0-9-]", "-", text.lower())[: _SUBDOMAIN_MAX - _HASH_CHARS - 1]
    readable = readable.strip("-")
    return f"{readable}-{_digest(text)}" if readable else _digest(text)


def json_pointer_token(key: str) -> str:
    """`key` escaped as one token of a JSON pointer (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
