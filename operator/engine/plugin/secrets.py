"""Values that must stay out of status, Events and logs: the SecretStore and its references.

A type keeps such a value in the engine's `SecretStore` and exposes a
`secret_token` in its place; the engine puts the value in only where it hands
properties to a type (see `engine/sensitive.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote


@dataclass(frozen=True)
class StoredSecret:
    """One entry of a SecretStore: string data and the resource it was written for."""

    name: str
    stack: str
    logical_name: str
    data: Mapping[str, str] = field(default_factory=dict)


class SecretStore(Protocol):
    """Where types keep values that must never appear in status, Events or logs.

    In the simulator a dict; in the operator one Secret per entry in the stack's
    namespace, owned by the resource's StackResource. An entry is named by the
    type (its physical name, typically); `record_id` says which resource record
    it belongs to.
    """

    def write(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        stack: str,
        logical_name: str,
        record_id: str,
    ) -> None:
        """Create or overwrite the entry `name` (writes are retried after a crash)."""
        ...

    def read(self, name: str) -> StoredSecret | None:
        """The entry called `name`, if any."""
        ...

    def delete(self, name: str) -> None:
        """Delete the entry called `name`; nothing happens if there is none."""
        ...

    def release(self, name: str) -> None:
        """Untie the entry from its stack (deletion_policy Retain): it outlives the record."""
        ...

    def locate(self, name: str) -> str:
        """Where a consumer finds the entry `name` (in Kubernetes: the Secret's name)."""
        ...


# A reference to one key of a SecretStore entry, as it travels in place of the
# value: a type returns it from `reference_id` / `get_attribute` (so status,
# sync points and outputs hold only the reference), and the engine puts the
# value in where the reference occurs in the properties it gives a type.
_SECRET_TOKEN_PREFIX = "$(convergence.secret:"
SECRET_TOKEN = re.compile(r"\$\(convergence\.secret:([A-Za-z0-9_.~%-]+)/([A-Za-z0-9_.~%-]+)\)")


def secret_token(name: str, key: str) -> str:
    """The reference to key `key` of SecretStore entry `name` (see SECRET_TOKEN)."""
    return f"{_SECRET_TOKEN_PREFIX}{quote(name, safe='')}/{quote(key, safe='')})"


def has_secret_token(text: str) -> bool:
    """Whether a string holds a secret reference (a quick check before SECRET_TOKEN)."""
    return _SECRET_TOKEN_PREFIX in text
