"""What every resource made of a child stack shares: apply it, follow its phase, delete it.

A subclass says what the child is (`child_spec`: its template, parameter
values and timeout); this base makes it through `ResourceContext.stacks`
(`NestedStacks`, the plugin API's door to child stacks): on Kubernetes a
Stack named `<parent>-<resource>-<short id>`, owned by the parent Stack and
acting with its ServiceAccount. Create and update apply the child (an update
reaches the same child, in place) and return at once; the checks follow its
phase once it has taken up the spec applied (a child `*_FAILED` fails the
resource with the child's reason), and a delete is complete when the child
is gone. `get_resource` gives the child's name. A FAILED resource is updated
in place by the next update (Heat's StackResource): the same child is applied
again, asked to converge anew when its spec is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from convergence.operator.engine.plugin import (
    Cookie,
    NestedStacks,
    NestedStackState,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
    nested_stack_name,
)


class NestedStackResource(ResourceType):
    """Base of the types whose physical resource is a child stack."""

    # As in Heat, a FAILED nested stack resource is updated in place, not replaced,
    # once its child exists: the child's own traversal replaces what failed in it.
    replace_on_failure: ClassVar[bool] = False

    def child_spec(self) -> tuple[Mapping[str, Any], Mapping[str, Any], float | None]:
        """The child's template, parameter values and timeout in seconds (None: none)."""
        raise NotImplementedError

    def child_environment(self) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
        """The child's Heat environment and files map (None: the parent's, as Heat gives
        them to a nested stack: see `NestedStacks.apply`)."""
        return None, None

    def stacks(self) -> NestedStacks:
        """The parent's child stacks; ResourceFailure where nesting is not wired."""
        if self.context.stacks is None:
            raise ResourceFailure("nested stacks are not available to this engine")
        return self.context.stacks

    def child(self) -> str:
        """The child's name: the one recorded, else the one this record makes."""
        return self.context.resource_id or nested_stack_name(
            self.context.stack.name, self.context.name, self.context.record_id
        )

    def child_state(self) -> NestedStackState | None:
        """The child as it is now (None: there is none)."""
        return self.stacks().get(self.child())

    def _apply(self) -> Cookie:
        template, parameters, timeout = self.child_spec()
        return {"generation": self.apply_child(template, parameters, timeout)}

    def apply_child(
        self, template: Mapping[str, Any], parameters: Mapping[str, Any], timeout: float | None
    ) -> int:
        """Apply the child's spec; return its generation. A FAILED child given the spec it
        failed at is asked to converge again (as Heat updates a FAILED nested stack)."""
        name = self.child()
        environment, files = self.child_environment()
        # Recorded before the request: a delete after a failed create still finds it.
        self.context.resource_id = name
        stacks = self.stacks()
        before = stacks.get(name)
        generation = stacks.apply(
            name,
            template,
            parameters,
            resource=self.context.name,
            record_id=self.context.record_id,
            timeout=timeout,
            environment=environment,
            files=files,
        )
        self.context.data.pop("retry", None)
        if before is not None and before.status == "FAILED" and generation <= before.generation:
            token = stacks.retry(name)
            if token is not None:
                self.context.data["retry"] = token
        return generation

    def _settled(self, cookie: Cookie) -> bool:
        """Whether the child finished the operation applied; ResourceFailure if it failed."""
        name = self.child()
        state = self.stacks().get(name)
        if state is None:
            raise ResourceFailure(f"nested stack {name} is gone")
        if state.generation < int((cookie or {}).get("generation", 0)):
            return False  # not taken up yet: its phase is the previous operation's
        retry = self.context.data.get("retry")
        if retry is not None and state.retried != retry:
            return False  # asked to converge again, not taken up yet
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
            self.stacks().delete(self.context.resource_id)
        return None

    def check_delete_complete(self, cookie: Cookie) -> bool:
        if self.context.resource_id is None:
            return True
        state = self.stacks().get(self.context.resource_id)
        if state is None:
            return True
        if state.action == "DELETE" and state.status == "FAILED":
            raise ResourceFailure(_failed(state))
        return False


def _failed(state: NestedStackState) -> str:
    reason = f": {state.reason}" if state.reason else ""
    return f"nested stack {state.name} is {state.phase}{reason}"
