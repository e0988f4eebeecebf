"""How engine identifiers become Kubernetes object names, labels and API coordinates.

Record and revision ids name objects directly (they are UUIDs, which are
DNS-1123 subdomains), so they are checked, never rewritten: a rewritten id
could no longer be found by the engine. Label values are only for selecting,
so a value that a label cannot hold (too long, or a logical resource name with
characters labels refuse) is shortened to a readable prefix and a hash, and
whoever selects by it filters on the exact value afterwards.
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
# On every StackResource: its physical resource is deleted (or released) before the
# object goes, so deleting a StackResource by hand never leaks or loses it.
RESOURCE_FINALIZER = f"{GROUP}/physical-resource"

STACK_LABEL = f"{GROUP}/stack"
RESOURCE_LABEL = f"{GROUP}/resource"
STACK_RESOURCE_LABEL = f"{GROUP}/stack-resource"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "convergence"

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MAX = 253
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_VALUE_MAX = 63
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


def label_value(text: str) -> str:
    """`text` if a label can hold it, else a readable prefix and a hash of it (still unique)."""
    if len(text) <= _LABEL_VALUE_MAX and _LABEL_VALUE.match(text):
        return text
    readable = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: _LABEL_VALUE_MAX - _HASH_CHARS - 1]
    readable = readable.strip("-_.")
    return f"{readable}-{_digest(text)}" if readable else _digest(text)


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
