"""OS::Heat::Stack: a stack inside a stack, converged by the same engine.

Heat's semantics (its RemoteStack, in this cloud): `template` is the child's
template as YAML or JSON text (a `|` block, or what `get_file` gives: as in
Heat a string, so that the parent's template language leaves it alone),
`parameters` its parameter values, `timeout` the minutes each of its
operations may take. All three change in place: the child is updated, never
replaced, unless the resource's type changes (a replacement is a new record,
hence a new child, and the old one is deleted with it). The child is created
with rollback disabled, as Heat does: a failure is reported to the parent,
whose own rollback (if enabled) converges the child back. How the child is
made and followed: `nested_stack.NestedStackResource`.

Attributes: `outputs` (the child's outputs as a map, so `get_attr: [res,
outputs, name]` reads one) and `stack_name`; `get_resource` gives the child's
name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    PropertiesModel,
    ResourceFailure,
    template_document,
)
from convergence.reconcilers.nested_stack import NestedStackResource


class StackProperties(PropertiesModel):
    """Properties of OS::Heat::Stack; all update in place."""

    template: str = Field(
        ...,
        description="The child stack's template, as YAML or JSON text.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values of the child stack.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    timeout: int | None = Field(
        None,
        ge=1,
        description="Minutes each operation of the child stack may take.",
        json_schema_extra=UPDATE_ALLOWED,
    )


class HeatStack(NestedStackResource):
    """A resource whose physical resource is a child stack of the template given."""

    Properties: ClassVar[type[PropertiesModel]] = StackProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "outputs": "The child stack's outputs, by name.",
        "stack_name": "The name of the child stack.",
    }
    # The child's resources are the child's: nothing of the parent's own is physical.
    has_physical_resource: ClassVar[bool] = False

    @classmethod
    def validate_properties(cls, raw: Mapping[str, Any]) -> PropertiesModel:
        if isinstance(raw.get("template"), Mapping):
            raise ResourceFailure(
                "Property error: template: the child's template is text (a YAML `|` block or "
                "get_file), as in Heat: a mapping would be read as part of the parent's template"
            )
        properties = super().validate_properties(raw)
        assert isinstance(properties, StackProperties)
        template_document(properties.template, "template")
        return properties

    @property
    def props(self) -> StackProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, StackProperties)
        return self.properties

    def child_spec(self) -> tuple[Mapping[str, Any], Mapping[str, Any], float | None]:
        timeout = None if self.props.timeout is None else self.props.timeout * 60.0
        return template_document(self.props.template, "template"), self.props.parameters, timeout

    def get_attribute(self, name: str) -> Any:
        if name == "stack_name":
            return self.child()
        if name == "outputs":
            state = self.child_state()
            return {} if state is None else dict(state.outputs)
        return None
