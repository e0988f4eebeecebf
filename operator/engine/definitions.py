"""How the engine gets the definition a traversal resolves against.

`Definition` is the part of a stack definition the engine uses (which
resources, what each requires, how properties and outputs resolve); a
`DefinitionLoader` builds one from a stored template revision.
`template_definitions` is the real loader: a HOT template bound with the
template language (`engine/hot/`), with the revision's environment (registry,
parameters, parameter defaults) and files map (get_file, template resources).
The simulator and tests may load definitions differently.
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
from convergence.operator.engine.hot.environment import Environment
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
    # Lenient: the template's own errors are reported with those binding finds.
    template = (
        Template.empty()
        if revision is None
        else Template.parse(revision.template, lenient=True, files=revision.files)
    )
    parameters: Mapping[str, Any] = {}
    environment = Environment()
    if revision is not None:
        environment = Environment.parse(revision.environment)
        # As in Heat: defaults, then the environment's values, then the stack's own.
        parameters = {
            **environment.defaults_for(template.parameter_schemas),
            **environment.parameters,
            **revision.parameters,
        }
    prior = previous if isinstance(previous, StackDefinition) else None
    # Every function evaluated now (validate), so that a bad argument stops the
    # operation before a traversal starts instead of failing a resource half-way.
    return StackDefinition(
        template,
        parameters,
        StackIdentity(name=stack.name, id=stack.id, project_id=project_id),
        environment=environment,
        files=None if revision is None else revision.files,
        type_exists=types.exists,
        type_attributes=types.attributes,
        previous=prior,
        validate=True,
    )
