"""OS::Heat::Stack: a stack inside a stack, converged by the same engine.

Heat's semantics (its RemoteStack, in this cloud): `template` is the child's
template as YAML or JSON text (a `|` block, or what `get_file` gives: as in
Heat a string, so that the parent's template language leaves it alone),
`parameters` its parameter values, `timeout` the minutes each of its
operations may take. All three change in place: the child is updated, never
replaced, unless the resource's type changes (a replacement is a new record,
hence a new child, and the old one is deleted with it). The child is created
with rollback disabled, as Heat does: a failure is reported to the parent,
whose own rollback (if enabled) converges the child back.

The child is made through `ResourceContext.stacks` (`NestedStacks`): on
Kubernetes a Stack named `<parent>-<resource>-<short id>`, owned by the parent
Stack and acting with its ServiceAccount. Create, update and delete start the
child's operation and return at once; the checks follow its phase once it has
taken up the spec applied (a child `*_FAILED` fails the resource with the
child's reason), and a delete is complete when the child is gone.

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
    Cookie,
    NestedStacks,
    NestedStackState,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
    nested_stack_name,
    template_document,
)


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


class HeatStack(ResourceType):
    """A resource whose physical resource is a child stack."""

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

    def _stacks(self) -> NestedStacks:
        if self.context.stacks is None:
            raise ResourceFailure("nested stacks are not available to this engine")
        return self.context.stacks

    def _child(self) -> str:
        """The child's name: the one recorded, else the one this record makes."""
        return self.context.resource_id or nested_stack_name(
            self.context.stack.name, self.context.name, self.context.record_id
        )

    def _apply(self) -> Cookie:
        name = self._child()
        # Recorded before the request: a delete after a failed create still finds it.
        self.context.resource_id = name
        timeout = None if self.props.timeout is None else self.props.timeout * 60.0
        generation = self._stacks().apply(
            name,
            template_document(self.props.template, "template"),
            self.props.parameters,
            resource=self.context.name,
            record_id=self.context.record_id,
            timeout=timeout,
        )
        return {"generation": generation}

    def _settled(self, cookie: Cookie) -> bool:
        """Whether the child finished the operation applied; ResourceFailure if it failed."""
        name = self._child()
        state = self._stacks().get(name)
        if state is None:
            raise ResourceFailure(f"nested stack {name} is gone")
        if state.generation < int((cookie or {}).get("generation", 0)):
            return False  # not taken up yet: its phase is the previous operation's
        if state.status == "FAILED":
            raise ResourceFailure(_failed(state))
        return state.status == "COMPLETE"

    def create(self) -> Cookie:
        return self._apply()

    def check_create_complete(self, cookie: Cookie) -> bool:
        return self._settled(cookie)

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        return self._apply()

    def check_update_complete(self, cookie: Cookie) -> bool:
        return self._settled(cookie)

    def delete(self) -> Cookie:
        if self.context.resource_id is not None:
            self._stacks().delete(self.context.resource_id)
        return None

    def check_delete_complete(self, cookie: Cookie) -> bool:
        if self.context.resource_id is None:
            return True
        state = self._stacks().get(self.context.resource_id)
        if state is None:
            return True
        if state.action == "DELETE" and state.status == "FAILED":
            raise ResourceFailure(_failed(state))
        return False

    def get_attribute(self, name: str) -> Any:
        if name == "stack_name":
            return self._child()
        if name == "outputs":
            state = self._stacks().get(self._child())
            return {} if state is None else dict(state.outputs)
        return None


def _failed(state: NestedStackState) -> str:
    reason = f": {state.reason}" if state.reason else ""
    return f"nested stack {state.name} is {state.phase}{reason}"
