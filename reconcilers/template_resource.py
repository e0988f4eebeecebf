"""Template resources: a resource whose type is a template file, run as a nested stack.

As in Heat, `type: server.yaml` (or a type the environment's
`resource_registry` maps to `server.yaml`) names a file of the Stack's
`spec.files`, and the resource is a child stack of that template: its
properties are the child's parameter values, its attributes the child's
outputs (`get_attr: [res, OUTPUT]`), and `get_resource` gives the child's
name, or the child's `OS::stack_id` output when it has one (Heat's rule).

The engine's template language has done the rest before this type runs
(`engine/hot/template_resources.py`): it found the file, checked the
properties against the child's parameters and that no template uses itself,
and hands this type the child's template, parameter values, environment and
files as its properties. All of them change in place: a new file content, a
new property value or environment updates the child, whose own traversal
converges only what changes. A different file (the type changes) replaces the
resource: a new child, the old one deleted after. Registered as
`Convergence::TemplateResource`; templates never name that type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from pydantic import Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    Cookie,
    PropertiesModel,
    ResourceContext,
)
from convergence.reconcilers.nested_stack import NestedStackResource

# The output whose value a template resource's reference id is, when the child has it.
STACK_ID_OUTPUT = "OS::stack_id"


class TemplateResourceProperties(PropertiesModel):
    """What the engine gives a template resource; every field changes in place."""

    template: dict[str, Any] = Field(
        ..., description="The child's template.", json_schema_extra=UPDATE_ALLOWED
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The resource's properties: the child's parameter values.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    environment: dict[str, Any] = Field(
        default_factory=dict,
        description="The child's Heat environment.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="The parent's files map, which the child reads too.",
        json_schema_extra=UPDATE_ALLOWED,
    )


class TemplateResource(NestedStackResource):
    """A resource whose physical resource is a child stack of a template file."""

    Properties: ClassVar[type[PropertiesModel]] = TemplateResourceProperties
    # The child's outputs: the template language checks the names against them.
    any_attribute: ClassVar[bool] = True
    has_physical_resource: ClassVar[bool] = False

    def __init__(self, context: ResourceContext, properties: PropertiesModel) -> None:
        super().__init__(context, properties)
        self._outputs: dict[str, Any] | None = None

    @property
    def props(self) -> TemplateResourceProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, TemplateResourceProperties)
        return self.properties

    def child_spec(self) -> tuple[Mapping[str, Any], Mapping[str, Any], float | None]:
        # A property resolved to null gives the parameter no value, as in Heat.
        parameters = {k: v for k, v in self.props.parameters.items() if v is not None}
        return self.props.template, parameters, None

    def child_environment(self) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
        return self.props.environment, self.props.files

    def _settled(self, cookie: Cookie) -> bool:
        done = super()._settled(cookie)
        if done:
            state = self.child_state()
            outputs = {} if state is None else dict(state.outputs)
            reference = outputs.get(STACK_ID_OUTPUT)
            if reference is None:
                self.context.data.pop("reference", None)
            else:
                self.context.data["reference"] = str(reference)
        return done

    def reference_id(self) -> str | None:
        reference = self.context.data.get("reference")
        return str(reference) if reference else super().reference_id()

    def get_attribute(self, name: str) -> Any:
        if self._outputs is None:
            # Read once per step, however many outputs are read.
            state = self.child_state()
            self._outputs = {} if state is None else dict(state.outputs)
        return self._outputs.get(name)

    def attribute_names(self) -> Collection[str]:
        # `get_attr: [res]` gives every output of the child, as in Heat.
        return tuple(self.props.template.get("outputs") or ())
