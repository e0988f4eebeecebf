"""The properties of a resource type: a pydantic model, and which fields change in place.

The engine, not the type, decides to replace: a change of a property that is
not update-allowed replaces the resource (see `ResourceType.needs_replace` for
what a type may add).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# Put on a property's Field to allow changing it without replacement:
#   value: str = Field("x", description="...", json_schema_extra=UPDATE_ALLOWED)
UPDATE_ALLOWED: dict[str, Any] = {"update_allowed": True}


class PropertiesModel(BaseModel):
    """Base of every properties model: unknown properties are an error, like in Heat."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class NoProperties(PropertiesModel):
    """Properties model of a type that takes none."""


def update_allowed(model: type[PropertiesModel], name: str) -> bool:
    """Whether property `name` of `model` may change in place (declared on its Field)."""
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and extra.get("update_allowed") is True


def changed_properties(before: PropertiesModel, after: PropertiesModel) -> frozenset[str]:
    """Names of the properties whose values differ between two instances of one model."""
    return frozenset(
        name for name in type(after).model_fields if getattr(before, name) != getattr(after, name)
    )
