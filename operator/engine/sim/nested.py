"""Nested stacks in the simulator: child stacks in the same in-memory store, run by its queue.

What the Kubernetes operator does with a child Stack object, done directly
on the engine: `apply` creates or updates the child (its traversal starts at
once, so the generation applied is the one observed), `delete` starts its
delete, and a child whose delete is complete is forgotten, as the Stack
object goes once its finalizer is released. The child's worker steps run from
the simulator's one queue, interleaved with the parent's. Which parent and
resource made each child is kept (`parents`), for scenarios and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convergence.operator.engine import operations
from convergence.operator.engine.hot.environment import nested_environment
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.plugin import NestedStackState, ResourceFailure
from convergence.operator.engine.store import COMPLETE, DELETE, InMemoryStore
from convergence.operator.engine.wiring import Engine


@dataclass(frozen=True)
class ChildOf:
    """The parent stack and the resource (logical name, record) a child was made for."""

    parent: str
    resource: str
    record_id: str


@dataclass
class SimulatedStacks:
    """The engine's NestedStackClients in the simulator."""

    engine: Engine
    memory: InMemoryStore
    parents: dict[str, ChildOf] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)

    def for_stack(self, stack: str) -> ParentStacks:
        return ParentStacks(self, stack)

    def children(self, parent: str) -> list[str]:
        """The children made for `parent` that still exist."""
        return [
            name
            for name, child in self.parents.items()
            if child.parent == parent and self.memory.get_stack(name) is not None
        ]


@dataclass(frozen=True)
class ParentStacks:
    """The NestedStacks of one parent stack in the simulator."""

    owner: SimulatedStacks
    parent: str

    def apply(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        resource: str,
        record_id: str,
        timeout: float | None = None,
        environment: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> int:
        engine = self.owner.engine
        if environment is None or files is None:
            inherited = self._inherited(resource)
            environment = inherited[0] if environment is None else environment
            files = inherited[1] if files is None else files
        try:
            if engine.store.get_stack(name) is None:
                operations.create_stack(
                    engine,
                    name,
                    template,
                    parameters,
                    disable_rollback=True,
                    timeout=timeout,
                    environment=environment,
                    files=files,
                )
            else:
                operations.update_stack(
                    engine,
                    name,
                    template,
                    parameters,
                    timeout=timeout,
                    environment=environment,
                    files=files,
                )
        except TemplateError as exc:
            raise ResourceFailure(f"nested stack {name}: invalid template: {exc}") from None
        except operations.OperationRefused as exc:
            raise ResourceFailure(f"nested stack {name}: {exc}") from None
        self.owner.parents[name] = ChildOf(self.parent, resource, record_id)
        generation = self.owner.generations.get(name, 0) + 1
        self.owner.generations[name] = generation
        return generation

    def _inherited(self, resource: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The environment and files a child of `resource` gets from the parent's revision."""
        engine = self.owner.engine
        parent = engine.store.get_stack(self.parent)
        if parent is None or parent.template is None:
            return {}, {}
        revision = engine.store.get_template(parent.template)
        return nested_environment(revision.environment, resource), dict(revision.files)

    def get(self, name: str) -> NestedStackState | None:
        stack = self.owner.engine.store.get_stack(name)
        if stack is None:
            return None
        if stack.action == DELETE and stack.status == COMPLETE:
            # The Stack object would be gone now: its finalizer lets it go.
            self.owner.memory.drop_stack(name)
            return None
        return NestedStackState(
            name=name,
            generation=self.owner.generations.get(name, 0),
            action=stack.action,
            status=stack.status,
            reason=stack.status_reason,
            outputs=dict(stack.outputs),
        )

    def retry(self, name: str) -> str | None:
        return None  # every apply here starts a traversal, a FAILED child's too

    def delete(self, name: str) -> None:
        stack = self.owner.engine.store.get_stack(name)
        if stack is None or stack.action == DELETE:
            return  # as on Kubernetes: a Stack being deleted is deleted once
        operations.delete_stack(self.owner.engine, name)
