"""Sensitive values: kept in a SecretStore, carried everywhere else as references.

A value such as OS::Heat::RandomString's string must never be written to a
record's status, a sync point, the Stack's outputs, an Event or a log. Its
type keeps it in the engine's `SecretStore` and answers `get_resource` /
`get_attr` with a reference (`plugin.secret_token`), so the attributes and
reference ids the engine stores and pushes hold only that reference. Outputs
show the reference too.

Only where the engine hands properties to a type does the value appear:
`reveal` puts it in wherever a reference occurs in a string of the resolved
properties (also inside a longer string made by `list_join` or
`str_replace`). The engine keeps storing the properties with the references,
so a dependent's status never holds the value either; what the dependent type
does with the value it was given (e.g. OS::Heat::TestResource keeps its
`value` in its data) is up to that type. Functions that compute on the string
itself (`length`, `digest`, `str_split`, `yaql`) see the reference, not the
value.

A reference is honoured only for an entry written for the same stack: a
template cannot read another stack's secrets by writing a reference by hand.
`Revealed` takes the values out again of what the engine writes after giving
them to a type in the same step: a failure reason, and the attributes and
reference id it records and pushes (OS::Heat::Value passing a RandomString's
value through shows the reference, and its dependents get the value). Because
reveal puts back exactly what hide took out, this round trip is lossless for
strings; a value that a type turned into a number or boolean cannot be told
apart from any other and is stored as it is. What a type keeps in its own
persisted data is its business: OS::Heat::TestResource keeps its `value` there,
so a TestResource given the string shows it in its StackResource's status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from convergence.operator.engine.plugin import (
    SECRET_TOKEN,
    ResourceFailure,
    SecretStore,
    has_secret_token,
)


@dataclass
class Revealed:
    """The values put in during one worker step, by reference (to scrub them out again)."""

    values: dict[str, str] = field(default_factory=dict)

    def scrub(self, text: str) -> str:
        """`text` with every revealed value replaced by its reference again."""
        for token, value in sorted(self.values.items(), key=lambda item: -len(item[1])):
            if value:
                text = text.replace(value, token)
        return text

    def hide(self, value: Any) -> Any:
        """A JSON value with `scrub` applied to each of its strings (keys too)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self.scrub(str(key)): self.hide(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.hide(item) for item in value]
        return value


def reveal(
    properties: Mapping[str, Any],
    stack: str,
    secrets: SecretStore | None,
    revealed: Revealed,
) -> dict[str, Any]:
    """`properties` with each secret reference replaced by its value; ResourceFailure when a
    referenced entry is missing or belongs to another stack."""
    entries: dict[str, Mapping[str, str]] = {}

    def value_of(name: str, key: str, token: str) -> str:
        if token in revealed.values:
            return revealed.values[token]
        if name not in entries:
            entry = secrets.read(name) if secrets is not None else None
            if entry is None or entry.stack != stack:
                raise ResourceFailure(
                    f"The secret {name!r} that a property refers to does not exist in "
                    f"stack {stack!r}"
                )
            entries[name] = entry.data
        if key not in entries[name]:
            raise ResourceFailure(f"The secret {name!r} has no key {key!r}")
        revealed.values[token] = entries[name][key]
        return revealed.values[token]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            if not has_secret_token(value):
                return value
            return SECRET_TOKEN.sub(
                lambda match: value_of(
                    unquote(match.group(1)), unquote(match.group(2)), match.group(0)
                ),
                value,
            )
        if isinstance(value, Mapping):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return {key: walk(item) for key, item in properties.items()}
