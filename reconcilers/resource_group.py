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
the resource's data with the members and their reference ids), unless
`removal_policies_mode: update` makes the policies given now the whole list.

`update_policy` (Heat's, through `ResourceContext.update_policy`):
`batch_create` and `rolling_update` change the members in batches, and the
batches are visible as the child's templates. The group applies one child
template per batch, the next once the child has converged to the one before
and `pause_time` has passed (the plan and its progress are in the data,
under `rollout`, so a later poll, in another worker, carries on): on create
the template grows by `max_batch_size` members a batch; on an update whose
definition some members lack, at most `max_batch_size` members get it per
batch, highest index first, and the group grows for a while when
`min_in_service` leaves no room (group_batches.py is the arithmetic). The
data keeps which definition each member has (`member_patterns`: name ->
digest, `patterns`: digest -> resource_def with its index_var), so a change of
count alone, or an update after a failed one, gives the new definition only
to members that lack it, and members that neither come, go nor change are
left as they are. Without a policy (or on an update of count alone) the
whole new template is applied at once.

A bad `count`, `index_var`, removal policy or `update_policy` is refused
before anything starts (`validate_definition`, where the values are known
then) and fails the group with the same words otherwise.

Attributes: `refs` (the members' reference ids, in index order), `refs_map`
(name -> reference id), `attributes` (`[group, attributes, ATTR]`: name ->
ATTR of each member), `removed_rsrc_list` (the names removal policies took),
`resource.N` (member N's reference id),
`resource.N.ATTR` (its attribute ATTR), and any other name `[group, ATTR]`:
the list of ATTR over the members. The child exposes what they read as its
outputs (`ref_N`, `attrs_N`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    Cookie,
    PropertiesModel,
    ResourceFailure,
)
from convergence.reconcilers.group_batches import GroupUpdatePolicy, batch_members, batches
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
        min_length=3,
        description="Replaced by the member's name in resource_def's property strings.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    removal_policies: list[RemovalPolicy] = Field(
        default_factory=list,
        description="Members to remove first when the count shrinks.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    removal_policies_mode: Literal["append", "update"] = Field(
        "append",
        description="append: names removed before stay removed; update: only those of "
        "removal_policies now are (the others may be used again).",
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


def member_pattern(properties: GroupProperties) -> dict[str, Any]:
    """What every member is made from: resource_def with the index_var it substitutes."""
    definition = properties.resource_def
    return {
        "type": definition.type,
        "properties": definition.properties,
        "metadata": definition.metadata,
        "index_var": properties.index_var,
    }


def pattern_digest(pattern: Mapping[str, Any]) -> str:
    """A short digest naming a member pattern in the resource's data."""
    text = json.dumps(pattern, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def member_definition(pattern: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Member `name`'s resource in the child template."""
    member: dict[str, Any] = {
        "type": pattern["type"],
        "properties": substituted(pattern["properties"], pattern["index_var"], name),
    }
    if pattern.get("metadata"):
        member["metadata"] = pattern["metadata"]
    return member


def child_template(
    members: Mapping[str, str], patterns: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The child template of these members (name -> pattern digest), with the outputs
    the group's attributes read."""
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for name, digest in members.items():
        resources[name] = member_definition(patterns[digest], name)
        outputs[f"ref_{name}"] = {"value": {"get_resource": name}}
        outputs[f"attrs_{name}"] = {"value": {"get_attr": [name]}}
    return {"heat_template_version": CHILD_VERSION, "resources": resources, "outputs": outputs}


def group_update_policy(raw: Mapping[str, Any]) -> GroupUpdatePolicy:
    """The group's update_policy, validated; ResourceFailure saying what is wrong."""
    try:
        return GroupUpdatePolicy.model_validate(dict(raw))
    except ValidationError as exc:
        raise ResourceFailure(f"update_policy: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


class ResourceGroup(NestedStackResource):
    """A group of identical resources, managed as one nested stack."""

    Properties: ClassVar[type[PropertiesModel]] = GroupProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "refs": "The members' reference ids, in index order.",
        "refs_map": "A map of member names to reference ids.",
        "attributes": "A map of member names to one attribute of each ([group, attributes, A]).",
        "removed_rsrc_list": "The names removal policies took, never used again.",
    }
    # `resource.N`, `resource.N.ATTR` and any member attribute as a list.
    any_attribute: ClassVar[bool] = True
    has_physical_resource: ClassVar[bool] = False

    @classmethod
    def validate_definition(
        cls, known: Mapping[str, Any], update_policy: Mapping[str, Any]
    ) -> None:
        problems: list[str] = []
        placeholder = {"resource_def": {"type": "placeholder"}}
        try:
            GroupProperties.model_validate({**placeholder, **known})
        except ValidationError as exc:
            problems += [
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors()
                if err["loc"] and err["loc"][0] in known
            ]
        index_var = known.get("index_var", "%index%")
        definition = known.get("resource_def")
        if (
            isinstance(index_var, str)
            and isinstance(definition, Mapping)
            and index_var in str(definition.get("type", ""))
        ):
            problems.append(
                f"resource_def.type: {index_var!r} is not replaced in a member's type, "
                "only in its properties"
            )
        if problems:
            raise ResourceFailure(f"Property error: {'; '.join(problems)}")
        group_update_policy(update_policy)

    @classmethod
    def validate_properties(cls, raw: Mapping[str, Any]) -> PropertiesModel:
        properties = super().validate_properties(raw)
        assert isinstance(properties, GroupProperties)
        if properties.index_var in properties.resource_def.type:
            raise ResourceFailure(
                f"Property error: resource_def.type: {properties.index_var!r} is not replaced "
                "in a member's type, only in its properties"
            )
        return properties

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
        if self.props.removal_policies_mode == "update":
            removed = set()
        for policy in self.props.removal_policies:
            removed.update(by_ref.get(item, item) for item in policy.resource_list)
        members = member_names(self.props.count, removed)
        data["members"] = members
        data["removed"] = sorted(removed)
        return members

    def child_spec(self) -> tuple[Mapping[str, Any], Mapping[str, Any], float | None]:
        pattern = member_pattern(self.props)
        digest = pattern_digest(pattern)
        members = {name: digest for name in self._members()}
        return child_template(members, {digest: pattern}), {}, None

    # -- create and update, in batches when the update policy says so ------------------------

    def create(self) -> Cookie:
        policy = group_update_policy(self.context.update_policy).batch_create
        target = self._members()
        if policy is None or not target:
            new = self._new_digest()
            return self._apply_members({name: new for name in target})
        plan = batches(len(target), 0, policy.max_batch_size)
        return self._start_rollout(plan, policy.pause_time, {})

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        policy = group_update_policy(self.context.update_policy).rolling_update
        current = self._current_members(before)
        target = self._members()
        removed = set(self.context.data["removed"])
        current = {name: d for name, d in current.items() if name not in removed}
        new = self._new_digest()
        if policy is None or all(digest == new for digest in current.values()):
            return self._apply_members({name: new for name in target})
        plan = batches(len(target), len(current), policy.max_batch_size, policy.min_in_service)
        return self._start_rollout(plan, policy.pause_time, current)

    def check_create_complete(self, cookie: Cookie) -> bool:
        return self._rolled_out(cookie)

    def check_update_complete(self, cookie: Cookie) -> bool:
        return self._rolled_out(cookie)

    def _new_digest(self) -> str:
        """The digest of the members' pattern now, kept in data with the patterns in use."""
        pattern = member_pattern(self.props)
        digest = pattern_digest(pattern)
        patterns = dict(self.context.data.get("patterns") or {})
        patterns[digest] = pattern
        self.context.data["patterns"] = patterns
        return digest

    def _current_members(self, before: PropertiesModel) -> dict[str, str]:
        """The child's members now and their patterns (by digest); a record from before
        patterns were kept has its members at the applied definition."""
        data = self.context.data
        if "member_patterns" in data:
            return dict(data["member_patterns"])
        assert isinstance(before, GroupProperties)
        pattern = member_pattern(before)
        digest = pattern_digest(pattern)
        data["patterns"] = {**dict(data.get("patterns") or {}), digest: pattern}
        return {name: digest for name in data.get("members") or ()}

    def _apply_members(self, members: Mapping[str, str]) -> Cookie:
        """Apply the child template of `members` (name -> pattern digest) and remember them;
        patterns no member uses any more are forgotten."""
        data = self.context.data
        patterns = dict(data.get("patterns") or {})
        data["patterns"] = {d: patterns[d] for d in sorted(set(members.values()))}
        data["member_patterns"] = dict(members)
        generation = self.apply_child(child_template(members, patterns), {}, None)
        return {"generation": generation}

    def _start_rollout(
        self, plan: Sequence[tuple[int, int]], pause: float, current: Mapping[str, str]
    ) -> Cookie:
        """Apply the first batch of `plan`; the checks apply the others (see _rolled_out)."""
        self.context.data["member_patterns"] = dict(current)
        self.context.data["rollout"] = {
            "batches": [list(batch) for batch in plan],
            "next": 0,
            "pause": pause,
            "generation": 0,
            "resume_at": None,
        }
        self._next_batch()
        return None

    def _next_batch(self) -> None:
        """Apply the rollout's next batch and record it in data (each value a new object:
        the engine persists data it sees changed)."""
        data = self.context.data
        rollout = dict(data["rollout"])
        size, changes = rollout["batches"][rollout["next"]]
        names = member_names(size, set(data["removed"]))
        members = batch_members(
            dict(data.get("member_patterns") or {}),
            names,
            len(data["members"]),
            self._new_digest(),
            changes,
        )
        generation = self._apply_members(members)["generation"]
        data["rollout"] = {
            **rollout,
            "next": rollout["next"] + 1,
            "generation": generation,
            "resume_at": None,
        }

    def _rolled_out(self, cookie: Cookie) -> bool:
        """Whether the action is done: the child settled at the last batch (the next one
        applied, after the pause, when it settled at an earlier one)."""
        rollout = self.context.data.get("rollout")
        if rollout is None:
            return self._settled(cookie)
        if not self._settled({"generation": rollout["generation"]}):
            return False
        if rollout["next"] >= len(rollout["batches"]):
            del self.context.data["rollout"]
            return True
        if rollout["pause"] > 0:
            if rollout["resume_at"] is None:
                resume_at = self.context.now() + float(rollout["pause"])
                self.context.data["rollout"] = {**rollout, "resume_at": resume_at}
                return False
            if self.context.now() < float(rollout["resume_at"]):
                return False
        self._next_batch()
        return False

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
        if name == "removed_rsrc_list":
            return list(self.context.data.get("removed") or [])
        if name == "attributes":
            names = {a for values in attrs.values() for a in values}
            return {a: {m: attrs[m].get(a) for m in members} for a in sorted(names)}
        if name.startswith("resource."):
            member, _, attribute = name[len("resource.") :].partition(".")
            if member not in refs:
                return None
            return attrs[member].get(attribute) if attribute else refs[member]
        return [attrs[m].get(name) for m in members]
