"""OS::Heat::TestResource: a resource that stores a string, with knobs to wait, fail and replace.

Heat's test resource, with its semantics kept:
- `value` is stored on create (unless `fail`) and exposed as attribute `output`;
  on update a changed `value` is replaced when the *new* `update_replace` is
  true, else stored in place (unless `fail`) and the update waits.
- `update_replace_value` is not update-allowed: any change replaces.
- `fail`: a create stores nothing and fails after its wait; any update whose
  new `fail` is true fails after its wait (no wait if `value` is unchanged);
  a delete never fails.
- `wait_secs` (-1 = forever) and `action_wait_secs.{create,update,delete}`: how
  long each action waits; elapsed time must be strictly greater. An update uses
  the new properties, a delete the applied ones.
- `resource_id` is the physical name, and `get_resource` gives it.
- A delete takes its wait with the physical resource still there and removes
  it when the wait is over, as a real resource exists until its deletion is
  done (so a slow delete can be watched, and rollback can still find it).

The physical resource is a record in Reality named after the physical name,
holding the properties as given and the attribute `output`.

Accepted and ignored: `attr_wait_secs` (Heat sleeps while resolving `output`;
the engine never blocks, and attributes are read once per traversal anyway),
`constraint_prop_secs`, `client_name` and `entity_name` (Heat polls a real API
with them; there is none here).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    Cookie,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
)


class ActionWaitSecs(BaseModel):
    """Per-action override of `wait_secs`; a missing action falls back to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    create: float | None = Field(None, json_schema_extra=UPDATE_ALLOWED)
    update: float | None = Field(None, json_schema_extra=UPDATE_ALLOWED)
    delete: float | None = Field(None, json_schema_extra=UPDATE_ALLOWED)


class TestResourceProperties(PropertiesModel):
    """Properties of OS::Heat::TestResource; all update-allowed but update_replace_value."""

    value: str = Field(
        "test_string",
        description="The input string to be stored.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    update_replace: bool = Field(
        False,
        description="Replace (instead of updating in place) when value changes.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    update_replace_value: str | None = Field(
        None, description="A value that can be stored but not updated (a change replaces)."
    )
    fail: bool = Field(
        False,
        description="Fail the create or update after waiting.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    wait_secs: float = Field(
        0,
        description="Seconds every action waits (-1 is forever).",
        json_schema_extra=UPDATE_ALLOWED,
    )
    action_wait_secs: ActionWaitSecs | None = Field(
        None, description="Seconds to wait per action.", json_schema_extra=UPDATE_ALLOWED
    )
    attr_wait_secs: float = Field(
        0, description="Accepted and ignored (see the module).", json_schema_extra=UPDATE_ALLOWED
    )
    constraint_prop_secs: float = Field(
        0, description="Accepted and ignored (see the module).", json_schema_extra=UPDATE_ALLOWED
    )
    client_name: str = Field(
        "", description="Accepted and ignored (see the module).", json_schema_extra=UPDATE_ALLOWED
    )
    entity_name: str = Field(
        "", description="Accepted and ignored (see the module).", json_schema_extra=UPDATE_ALLOWED
    )


class TestResource(ResourceType):
    """A resource which stores the string value that was provided (for testing)."""

    # Not a test class, whatever its name says.
    __test__ = False

    Properties: ClassVar[type[PropertiesModel]] = TestResourceProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "output": "The string that was stored. This value is also available by "
        "referencing the resource."
    }

    @property
    def props(self) -> TestResourceProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, TestResourceProperties)
        return self.properties

    def _wait_secs(self, action: str) -> float:
        per_action = self.props.action_wait_secs
        secs = getattr(per_action, action) if per_action is not None else None
        return self.props.wait_secs if secs is None else float(secs)

    def _given_properties(self) -> dict[str, Any]:
        # What the template gave, without the defaults it left out, so that
        # reality shows what was asked for.
        return self.props.model_dump(mode="json", exclude_unset=True)

    def _started(self, action: str) -> Cookie:
        return {"started_at": self.context.now(), "wait_secs": self._wait_secs(action)}

    def create(self) -> Cookie:
        if not self.props.fail:
            self.context.data["value"] = self.props.value
            self.context.resource_id = self.context.physical_name()
            self.context.reality.create(
                self.context.physical_record(self._given_properties(), {"output": self.props.value})
            )
        return self._started("create")

    def needs_replace(self, before: PropertiesModel, changed: frozenset[str]) -> bool:
        return "value" in changed and self.props.update_replace

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        if "value" not in changed:
            return {"started_at": self.context.now(), "wait_secs": 0}
        if not self.props.fail:
            self.context.data["value"] = self.props.value
            if self.context.resource_id is not None:
                self.context.reality.update(
                    self.context.physical_record(
                        self._given_properties(), {"output": self.props.value}
                    )
                )
                # Every property is in that write: the completion need not write again.
                return {**self._started("update"), "written": True}
        return self._started("update")

    def delete(self) -> Cookie:
        return self._started("delete")

    def _check_complete(self, cookie: Cookie, failing: bool) -> bool:
        waited = self.context.now() - float(cookie["started_at"])
        wait_secs = float(cookie["wait_secs"])
        if wait_secs >= 0 and waited > wait_secs:
            if failing:
                raise ResourceFailure(f"ValueError: Test Resource failed {self.context.name}")
            return True
        return False

    def check_create_complete(self, cookie: Cookie) -> bool:
        return self._check_complete(cookie, self.props.fail)

    def check_update_complete(self, cookie: Cookie) -> bool:
        done = self._check_complete(cookie, self.props.fail)
        if done and self.context.resource_id is not None and not cookie.get("written"):
            # Properties other than value (e.g. wait_secs) changed in place too.
            self.context.reality.update(
                self.context.physical_record(
                    self._given_properties(), {"output": self.context.data.get("value")}
                )
            )
        return done

    def check_delete_complete(self, cookie: Cookie) -> bool:
        done = self._check_complete(cookie, failing=False)
        if done and self.context.resource_id is not None:
            self.context.reality.delete(self.context.resource_id)
        return done

    def get_attribute(self, name: str) -> Any:
        if name == "output":
            return self.context.data.get("value")
        return None
