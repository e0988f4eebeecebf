"""OS::Heat::ResourceGroup: `count` copies of one resource definition, as a nested stack.

As in Heat, the group is a child stack whose generated template has one
resource per member, named "0", "1", ...: `resource_def` (`type`,
`properties`, `metadata`) with every occurrence of `index_var` (default
`%index%`) in its property strings replaced by the member's name. Properties
are resolved in the parent (a `get_param` in `resource_def` is the parent's).
Every property changes in place: a new count or definition updates the child,
whose own traversal converges only the members that change (scaling up
creates the new members, scaling down deletes the surplus; the rest are left
as they are).

As in Heat, the members are the first `count` names "0", "1", ... that no
removal policy took: scaling down removes the highest indexes, and a member
named in `removal_policies` (`[{resource_list: [name or reference id,
...]}]`) is removed and its name never used again (Heat's blacklist, kept in
the resource's data with the members and their reference ids).

Attributes: `refs` (the members' reference ids, in index order), `refs_map`
(name -> reference id), `attributes` (`[group, attributes, ATTR]`: name ->
ATTR of each member), `resource.N` (member N's reference id),
`resource.N.ATTR` (its attribute ATTR), and any other name `[group, ATTR]`:
the list of ATTR over the members. The child exposes what they read as its
outputs (`ref_N`, `attrs_N`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    PropertiesModel,
)
from convergence.reconcilers.nested_stack import NestedStackResource

CHILD_VERSION = "2021-04-16"


class ResourceDefinition(BaseModel):
    """A member's definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    properties: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RemovalPolicy(BaseModel):
    """Members to remove first on scale-down, by name or reference id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_list: list[str] = Field(default_factory=list)


class GroupProperties(PropertiesModel):
    """Properties of OS::Heat::ResourceGroup; all update in place."""

    count: int = Field(
        1, ge=0, description="The number of members.", json_schema_extra=UPDATE_ALLOWED
    )
    resource_def: ResourceDefinition = Field(
        ..., description="The definition of every member.", json_schema_extra=UPDATE_ALLOWED
    )
    index_var: str = Field(
        "%index%",
        min_length=1,
        description="Replaced by the member's name in resource_def's property strings.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    removal_policies: list[RemovalPolicy] = Field(
        default_factory=list,
        description="Members to remove first when the count shrinks.",
        json_schema_extra=UPDATE_ALLOWED,
    )


def substituted(value: Any, index_var: str, index: str) -> Any:
    """`value` with `index_var` replaced by `index` in every string in it."""
    if isinstance(value, str):
        return value.replace(index_var, index)
    if isinstance(value, Mapping):
        return {key: substituted(item, index_var, index) for key, item in value.items()}
    if isinstance(value, list):
        return [substituted(item, index_var, index) for item in value]
    return value


def member_names(count: int, removed: set[str]) -> list[str]:
    """The first `count` names "0", "1", ... that were never removed (Heat's naming)."""
    names: list[str] = []
    index = 0
    while len(names) < count:
        if str(index) not in removed:
            names.append(str(index))
        index += 1
    return names


def _index(name: str) -> int:
    return int(name) if name.isdigit() else -1


class ResourceGroup(NestedStackResource):
    """A group of identical resources, managed as one nested stack."""

    Properties: ClassVar[type[PropertiesModel]] = GroupProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "refs": "The members' reference ids, in index order.",
        "refs_map": "A map of member names to reference ids.",
        "attributes": "A map of member names to one attribute of each ([group, attributes, A]).",
    }
    # `resource.N`, `resource.N.ATTR` and any member attribute as a list.
    any_attribute: ClassVar[bool] = True
    has_physical_resource: ClassVar[bool] = False

    @property
    def props(self) -> GroupProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, GroupProperties)
        return self.properties

    def _members(self) -> list[str]:
        """The members this action converges to; the names removal policies named (by name
        or reference id) are remembered, never to be used again."""
        data = self.context.data
        by_ref = {ref: name for name, ref in dict(data.get("refs") or {}).items()}
        removed = set(data.get("removed") or [])
        for policy in self.props.removal_policies:
            removed.update(by_ref.get(item, item) for item in policy.resource_list)
        members = member_names(self.props.count, removed)
        data["members"] = members
        data["removed"] = sorted(removed)
        return members

    def child_spec(self) -> tuple[Mapping[str, Any], Mapping[str, Any], float | None]:
        definition = self.props.resource_def
        resources: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for name in self._members():
            member: dict[str, Any] = {
                "type": definition.type,
                "properties": substituted(definition.properties, self.props.index_var, name),
            }
            if definition.metadata:
                member["metadata"] = definition.metadata
            resources[name] = member
            outputs[f"ref_{name}"] = {"value": {"get_resource": name}}
            outputs[f"attrs_{name}"] = {"value": {"get_attr": [name]}}
        template = {
            "heat_template_version": CHILD_VERSION,
            "resources": resources,
            "outputs": outputs,
        }
        return template, {}, None

    def _settled(self, cookie: Any) -> bool:
        done = super()._settled(cookie)
        if done:
            # The members' reference ids, by which a removal policy may name them.
            state = self.child_state()
            outputs = {} if state is None else dict(state.outputs)
            members = list(self.context.data.get("members") or [])
            self.context.data["refs"] = {m: outputs.get(f"ref_{m}") for m in members}
        return done

    def get_attribute(self, name: str) -> Any:
        state = self.child_state()
        outputs = {} if state is None else dict(state.outputs)
        members = list(self.context.data.get("members") or [])
        refs = {m: outputs.get(f"ref_{m}") for m in members}
        attrs = {m: dict(outputs.get(f"attrs_{m}") or {}) for m in members}
        if name == "refs":
            return [refs[m] for m in members]
        if name == "refs_map":
            return refs
        if name == "attributes":
            names = {a for values in attrs.values() for a in values}
            return {a: {m: attrs[m].get(a) for m in members} for a in sorted(names)}
        if name.startswith("resource."):
            member, _, attribute = name[len("resource.") :].partition(".")
            if member not in refs:
                return None
            return attrs[member].get(attribute) if attribute else refs[member]
        return [attrs[m].get(name) for m in members]
