"""What resource types refuse in a template before any traversal starts.

The template language checks what it knows (names, functions, types that
exist, attributes); a type knows more about its own definition: Heat's
`Resource.validate`, run when a stack is validated. Each resource's type is
asked (`ResourceType.validate_definition`) about the properties whose values
are known when the template is taken up (those that need no other
resource's data) and its `update_policy`. This runs where a new template is
accepted: the Stack webhook (controllers/admission.py) refuses at apply, a
stack taking up a template (operations.py) fails with `InvalidTemplate`
before it stores or starts anything, and a preview answers the same. A
template stored before a type learned a check is never refused by it when
read again: only new templates are checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.definitions import Definition
from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError
from convergence.operator.engine.plugin import ResourceFailure, TypeRegistry, UnknownResourceType


def check_types(definition: Definition, types: TypeRegistry) -> None:
    """Raise TemplateError (every one found, each at its resource) for what types refuse."""
    errors = ErrorCollector()
    for name, resource in definition.resources.items():
        try:
            plugin_type = types.get(resource.type)
        except UnknownResourceType:
            continue  # the template language reports it
        dynamic = definition.property_references(name)
        known = {key: value for key, value in resource.properties.items() if key not in dynamic}
        # A policy that needs other resources' data is the type's to judge when it runs.
        policy = resource.update_policy if _plain(resource.update_policy) else {}
        try:
            plugin_type.validate_definition(known, policy)
        except ResourceFailure as exc:
            errors.add(TemplateError(f"resources.{name}", str(exc)))
    errors.check()


def _plain(value: Any) -> bool:
    """Whether a value is plain data (no function left in it)."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)
