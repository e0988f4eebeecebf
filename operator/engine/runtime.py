"""What engine code needs from its surroundings, gathered in one `Engine` value.

The engine is pure: it decides, and the things on `Engine` carry it out. The
store holds state, the type registry gives plugins, Reality is the physical
world plugins act on, the clock says the time, the dispatcher delivers
"run this node" messages (a queue in the simulator; in the operator a change
of the node's StackResource wakes its handler), and `definitions` turns a
stored template revision into the StackDefinition a traversal resolves
against (cached per revision).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from convergence.operator.engine.graph import Node
from convergence.operator.engine.plugin import (
    Clock,
    ObjectClients,
    Reality,
    SecretStore,
    StackRef,
    TypeRegistry,
)
from convergence.operator.engine.store import Store, TemplateRevision
from convergence.operator.engine.template import (
    ResourceData,
    ResourceDefinition,
    Template,
    TemplateError,
)


class Definition(Protocol):
    """The part of template.StackDefinition the engine uses."""

    @property
    def resources(self) -> Mapping[str, ResourceDefinition]:
        """Enabled resources by logical name."""
        ...

    def dependencies(self) -> Mapping[str, frozenset[str]]:
        """Logical name -> names it requires."""
        ...

    def required_attributes(self, name: str) -> frozenset[str]:
        """Attributes of `name` that resources or outputs reference (may hold ALL_ATTRIBUTES)."""
        ...

    def resolve_properties(self, name: str, data: Mapping[str, ResourceData]) -> dict[str, Any]:
        """Properties of `name` resolved against the data of what it requires."""
        ...

    def resolve_outputs(self, data: Mapping[str, ResourceData]) -> dict[str, Any]:
        """Outputs resolved against the data of the stack's resources."""
        ...


# Builds the definition of a revision (None: the empty template) for a stack;
# `previous` is the definition in force before (immutable parameters).
DefinitionLoader = Callable[
    [TemplateRevision | None, StackRef, TypeRegistry, "Definition | None"], Definition
]


# The sections of a Heat environment that a Stack's `spec.environment` may hold.
ENVIRONMENT_SECTIONS = ("resource_registry", "parameter_defaults")


def resource_registry(environment: Mapping[str, Any]) -> dict[str, str]:
    """The type aliases of a Heat environment (`resource_registry`: alias -> type name).

    Only type names are supported as values (Heat also allows template files
    and nested `resources:` overrides); anything else is a TemplateError.
    """
    unknown = sorted(set(environment) - set(ENVIRONMENT_SECTIONS))
    if unknown:
        raise TemplateError(
            "environment",
            f"unsupported section(s) {', '.join(unknown)}; "
            f"expected {', '.join(ENVIRONMENT_SECTIONS)}",
        )
    registry = environment.get("resource_registry") or {}
    if not isinstance(registry, Mapping):
        raise TemplateError("environment.resource_registry", "expected a map of type names")
    for alias, target in registry.items():
        if not isinstance(target, str) or not target:
            raise TemplateError(
                f"environment.resource_registry.{alias}",
                "expected a resource type name (template files and per-resource "
                "overrides are not supported)",
            )
    return dict(registry)


def parameter_defaults(environment: Mapping[str, Any], template: Template) -> dict[str, Any]:
    """The environment's `parameter_defaults` for the parameters `template` declares
    (others are ignored, as in Heat); parameter values given to the stack win."""
    defaults = environment.get("parameter_defaults") or {}
    if not isinstance(defaults, Mapping):
        raise TemplateError("environment.parameter_defaults", "expected a map of values")
    return {name: value for name, value in defaults.items() if name in template.parameter_schemas}


def template_definitions(
    revision: TemplateRevision | None,
    stack: StackRef,
    types: TypeRegistry,
    previous: Definition | None,
    project_id: str = "",
) -> Definition:
    """The real loader: parse the HOT template and bind it with the template layer.

    `project_id` is what OS::project_id gives: on Kubernetes, the Stack's
    namespace (the unit of tenancy, as a project is in OpenStack).
    """
    from convergence.operator.engine.template import StackDefinition, StackIdentity

    template = Template.empty() if revision is None else Template.parse(revision.template)
    parameters: Mapping[str, Any] = {}
    registry: dict[str, str] = {}
    if revision is not None:
        registry = resource_registry(revision.environment)
        parameters = {
            **parameter_defaults(revision.environment, template),
            **revision.parameters,
        }
    prior = previous if isinstance(previous, StackDefinition) else None
    definition = StackDefinition(
        template,
        parameters,
        StackIdentity(name=stack.name, id=stack.id, project_id=project_id),
        resource_registry=registry,
        type_exists=types.exists,
        previous=prior,
    )
    # Every function evaluated now, so that a bad argument stops the operation
    # before a traversal starts instead of failing a resource half-way.
    definition.validate()
    return definition


@dataclass(frozen=True, order=True)
class NodeMessage:
    """'Run this node of this traversal': all a worker step receives."""

    stack: str
    traversal: str
    node: Node


class Dispatcher(Protocol):
    """Delivers node messages to workers (at least once)."""

    def trigger(self, message: NodeMessage) -> None:
        """Have a worker run `message` soon."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        import time

        return time.time()


@dataclass
class Engine:
    """Everything a worker step or a stack operation uses."""

    store: Store
    types: TypeRegistry
    reality: Reality
    dispatcher: Dispatcher
    clock: Clock = field(default_factory=SystemClock)
    definitions: DefinitionLoader = template_definitions
    # Seconds between polls of an action in flight.
    poll_interval: float = 1.0
    # Kubernetes objects per stack (Kubernetes::Object); None in the simulator.
    objects: ObjectClients | None = None
    # Where types keep secret values (OS::Heat::RandomString); None: nowhere.
    secrets: SecretStore | None = None
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    _cache: dict[str | None, Definition] = field(default_factory=dict, repr=False)

    def definition(self, stack: StackRef, revision_id: str | None) -> Definition:
        """The definition of a stored revision (None: the empty template), cached."""
        if revision_id not in self._cache:
            revision = None if revision_id is None else self.store.get_template(revision_id)
            self._cache[revision_id] = self.definitions(revision, stack, self.types, None)
        return self._cache[revision_id]

    def remember(self, revision_id: str | None, definition: Definition) -> None:
        """Cache a definition built while starting a traversal."""
        self._cache[revision_id] = definition
