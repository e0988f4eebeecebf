"""How the engine gets the definition a traversal resolves against.

`Definition` is the part of a stack definition the engine uses (which
resources, what each requires, how properties and outputs resolve); a
`DefinitionLoader` builds one from a stored template revision.
`template_definitions` is the real loader: a HOT template bound with the
template language (`engine/hot/`), the environment's aliases and parameter
defaults applied. The simulator and tests may load definitions differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from convergence.operator.engine.hot.definition import (
    ResourceData,
    ResourceDefinition,
    StackDefinition,
    StackIdentity,
)
from convergence.operator.engine.hot.environment import parameter_defaults, resource_registry
from convergence.operator.engine.hot.functions.references import ResourceReference
from convergence.operator.engine.hot.template import Template
from convergence.operator.engine.plugin import StackRef, TypeRegistry
from convergence.operator.engine.store import TemplateRevision


class Definition(Protocol):
    """The part of hot.definition.StackDefinition the engine uses."""

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

    def property_references(self, name: str) -> Mapping[str, tuple[ResourceReference, ...]]:
        """Properties of `name` that need other resources' data -> the references in each."""
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


def template_definitions(
    revision: TemplateRevision | None,
    stack: StackRef,
    types: TypeRegistry,
    previous: Definition | None,
    project_id: str = "",
) -> Definition:
    """The real loader: parse the HOT template and bind it with the template language.

    `project_id` is what OS::project_id gives: on Kubernetes, the Stack's
    namespace (the unit of tenancy, as a project is in OpenStack).
    """
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
