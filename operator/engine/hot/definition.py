"""A stack definition: a Template bound to parameters, a stack identity and the environment,
what a traversal converges to.

A `StackDefinition` knows which resources are enabled (conditions), what each
one requires, which attributes of each are referenced, and how to resolve
properties and outputs once the data of the required resources (reference id
and attributes) has arrived through the sync points.

Cost: a StackDefinition walks each snippet once more than the Template did, to
bind parameters and conditions, and caches the dependency analysis;
resolve_properties then walks only the one resource's bound snippet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from convergence.operator.engine.hot.environment import Environment, is_template_type
from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError, describe_value
from convergence.operator.engine.hot.functions.conditions import outline_references
from convergence.operator.engine.hot.functions.references import GetAttr, ResourceReference
from convergence.operator.engine.hot.functions.snippets import (
    REMOVED,
    Function,
    bind_snippet,
    condition_value,
    json_copy,
    render_snippet,
    resolve_snippet,
)
from convergence.operator.engine.hot.parameters import (
    PROJECT_ID,
    STACK_ID,
    STACK_NAME,
    bind_parameter_values,
    changed_immutable_parameters,
)
from convergence.operator.engine.hot.template import ParsedResource, Template
from convergence.operator.engine.hot.template_resources import (
    TEMPLATE_RESOURCE_TYPE,
    ChildTemplate,
    check_properties,
    check_tree,
    check_values,
    load_child,
)


@dataclass(frozen=True)
class StackIdentity:
    """What the pseudo parameters OS::stack_name, OS::stack_id, OS::project_id give."""

    name: str
    id: str
    project_id: str


@dataclass(frozen=True)
class ResourceData:
    """What a finished node pushes to its dependents: reference id and the referenced attributes."""

    reference_id: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)


# Returned by StackDefinition.required_attributes when a template uses
# `get_attr: [res]` (all attributes of the resource).
ALL_ATTRIBUTES = "*"


# -- binding to parameters, identity and environment ---------------------------------------------


@dataclass(frozen=True)
class _BoundSnippet:
    """A snippet bound to parameters and conditions."""

    value: Any
    dynamic: bool  # whether get_resource/get_attr calls remain, to resolve against data

    def resolve(self, data: Mapping[str, ResourceData]) -> Any:
        return resolve_snippet(self.value, data) if self.dynamic else json_copy(self.value)

    def render(self) -> Any:
        return render_snippet(self.value) if self.dynamic else self.value


@dataclass(frozen=True)
class ResourceDefinition:
    """One enabled resource of a StackDefinition, properties still unresolved."""

    name: str
    type: str  # after resource_registry aliases; a template file's name for a template resource
    bound_properties: _BoundSnippet = field(repr=False)
    depends_on: tuple[str, ...] = ()
    deletion_policy: str = "Delete"  # "Delete" | "Retain"
    update_policy: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def properties(self) -> Mapping[str, Any]:
        """The properties snippet with get_resource/get_attr still in it, rendered anew at
        each use (validation and previews use it; a step resolves the bound snippet).
        Kept rendered for every resource, they were a quarter of a large stack's
        definition in memory."""
        return self.bound_properties.render()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _BoundResource:
    definition: ResourceDefinition
    properties: _BoundSnippet
    metadata: _BoundSnippet


class _Scope:
    """The BindingScope of one StackDefinition: parameters, conditions, enabled resources."""

    def __init__(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        enabled: Mapping[str, bool] | None = None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.conditions: dict[str, bool] = {}
        self._evaluating: list[str] = []
        self.enabled = enabled

    def parameter(self, name: str, where: str) -> Any:
        try:
            return self.parameters[name]
        except KeyError:
            raise TemplateError(where, f"unknown parameter {name!r}") from None

    def condition(self, name: str, where: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        definitions = self.template.parsed_conditions
        if name not in definitions:
            raise TemplateError(where, f"unknown condition {name!r}")
        if name in self._evaluating:
            cycle = [*self._evaluating[self._evaluating.index(name) :], name]
            raise TemplateError(
                f"conditions.{name}", f"circular condition definition: {' -> '.join(cycle)}"
            )
        self._evaluating.append(name)
        try:
            value, _ = bind_snippet(definitions[name], self)
        finally:
            self._evaluating.pop()
        if not isinstance(value, bool):
            raise TemplateError(
                f"conditions.{name}",
                "a condition must evaluate to true or false (use equals, not, and, or, "
                f"contains or a boolean), got {describe_value(value)}",
            )
        self.conditions[name] = value
        return value

    def is_enabled(self, condition: Any, where: str) -> bool:
        """Whether a resource or output with this parsed `condition` key is enabled."""
        if condition is None:
            return True
        value, _ = bind_snippet(condition, self)
        return condition_value(value, self, where)

    def check_reference(self, resource: str, where: str) -> None:
        assert self.enabled is not None, "resources are referenced only after conditions"
        enabled = self.enabled.get(resource)
        if enabled:
            return
        if enabled is None:
            raise TemplateError(where, f"unknown resource {resource!r}")
        raise TemplateError(
            where,
            f"resource {resource!r} is disabled by its condition; refer to it only where "
            "the same condition holds (e.g. inside an if, or with the same condition)",
        )


def _find_cycle(order: list[str], dependencies: Mapping[str, frozenset[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a] (a requires b ...), or None.

    Iterative depth-first search in template order, so that the same template
    always names the same cycle and 10,000 resources do not hit the recursion limit.
    """
    position = {name: index for index, name in enumerate(order)}

    def requirements(node: str) -> Iterator[str]:
        return iter(sorted(dependencies[node], key=position.__getitem__))

    done: set[str] = set()
    for root in order:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        pending = [requirements(root)]
        while pending:
            for required in pending[-1]:
                if required in on_path:
                    return [*path[path.index(required) :], required]
                if required not in done:
                    path.append(required)
                    on_path.add(required)
                    pending.append(requirements(required))
                    break
            else:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
    return None


def _section_item(where: str) -> str:
    """The section and item an error is about ("resources.web" of
    "resources.web.properties.image: get_param")."""
    return ".".join(where.partition(":")[0].split(".")[:2])


class _LazyDefinitions(Mapping[str, ResourceDefinition]):
    """The enabled resources by name; each definition is bound on first access."""

    def __init__(self, names: tuple[str, ...], bind: Callable[[str], _BoundResource]) -> None:
        self._names = names
        self._known = frozenset(names)
        self._bind = bind

    def __getitem__(self, name: str) -> ResourceDefinition:
        if name not in self._known:
            raise KeyError(name)
        return self._bind(name).definition

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __repr__(self) -> str:
        return f"<resources {', '.join(self._names)}>"


def _references_in(snippet: Any) -> Iterator[ResourceReference]:
    """The resource references left in a bound snippet, outermost first."""
    if isinstance(snippet, ResourceReference):
        yield snippet
    if isinstance(snippet, Function):
        yield from _references_in(snippet.args)
    elif isinstance(snippet, dict):
        for item in snippet.values():
            yield from _references_in(item)
    elif isinstance(snippet, list):
        for item in snippet:
            yield from _references_in(item)


class StackDefinition:
    """A template bound to parameters, identity and environment.

    Construction costs one pass over the references (`get_resource`, `get_attr`)
    and `if` calls of the enabled resources, not over their whole snippets: each
    resource is bound (its other functions evaluated with the parameters) on first
    use and kept. `validate()` binds everything at once, to reject a template whose
    functions fail on these parameters before any traversal starts.
    """

    def __init__(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        identity: StackIdentity,
        *,
        resource_registry: Mapping[str, str] | None = None,
        environment: Environment | None = None,
        files: Mapping[str, str] | None = None,
        type_exists: Callable[[str], bool] | None = None,
        type_attributes: Callable[[str], Collection[str] | None] | None = None,
        previous: StackDefinition | None = None,
        validate: bool = False,
    ) -> None:
        """Validate parameters (types, constraints, required, immutable vs `previous`),
        evaluate conditions, resolve types through the `environment`'s registry (or a bare
        `resource_registry` of aliases), load template resources' templates from `files`
        and check all they nest (template_resources.py), check types with `type_exists` and
        the attributes `get_attr` names with `type_attributes` (None: any attribute),
        detect dependency cycles; with `validate`, bind everything too (see validate()).
        Raise TemplateError: every error found, with those of a lenient `template`."""
        self.template = template
        self.identity = identity
        errors = ErrorCollector(template.errors)
        values = bind_parameter_values(template.parameter_schemas, parameters, errors)
        if previous is not None:
            with errors.part():
                self._check_immutable(values, previous)
        self._parameter_values = MappingProxyType(values)
        scope = _Scope(
            template,
            {
                **values,
                STACK_NAME: identity.name,
                STACK_ID: identity.id,
                PROJECT_ID: identity.project_id,
            },
        )
        for name in template.parsed_conditions:
            with errors.part():
                scope.condition(name, f"conditions.{name}")
        # A resource whose declaration failed (a lenient template's) counts as enabled, so
        # that references to it are no errors of their own.
        declared = template.raw.get("resources")
        enabled = dict.fromkeys(declared if isinstance(declared, dict) else (), True)
        for name, parsed in template.parsed_resources.items():
            with errors.part():
                enabled[name] = scope.is_enabled(parsed.condition, f"{parsed.where}.condition")
        scope.enabled = enabled
        self._scope = scope
        self.conditions: Mapping[str, bool] = MappingProxyType(scope.conditions)
        """The value of every condition of the `conditions` section."""

        self._parsed = {
            name: parsed for name, parsed in template.parsed_resources.items() if enabled[name]
        }
        if environment is None:
            environment = Environment(registry=dict(resource_registry or {}))
        self._files: Mapping[str, str] = MappingProxyType(dict(files or {}))
        # Template resources by name: the nested stack each one makes.
        self._children: dict[str, ChildTemplate] = {}
        self._types = self._resource_types(
            list(self._parsed.values()), environment, type_exists, errors
        )
        # The references of each enabled resource, and of each enabled output (None
        # for an output whose condition is false).
        self._references: dict[str, tuple[ResourceReference, ...]] = {}
        for name, parsed in self._parsed.items():
            self._references[name] = ()
            with errors.part():
                self._references[name] = tuple(outline_references(parsed.outline, scope))
        self._output_references: dict[str, tuple[ResourceReference, ...] | None] = {}
        for name, output in template.parsed_outputs.items():
            self._output_references[name] = None
            with errors.part():
                if scope.is_enabled(output.condition, f"outputs.{name}.condition"):
                    self._output_references[name] = tuple(outline_references(output.outline, scope))
        if type_attributes is not None:
            self._check_attributes(type_attributes, errors)
        self._dependencies = MappingProxyType(
            {
                name: frozenset(
                    required
                    for required in (
                        *(r for r in parsed.depends_on if enabled.get(r)),
                        *(reference.resource_name for reference in self._references[name]),
                    )
                    if required in self._parsed
                )
                for name, parsed in self._parsed.items()
            }
        )
        cycle = _find_cycle(list(self._parsed), self._dependencies)
        if cycle:
            errors.add(
                TemplateError(f"resources.{cycle[0]}", f"dependency cycle: {' -> '.join(cycle)}")
            )
        self._bound: dict[str, _BoundResource] = {}
        self._bound_outputs: dict[str, _BoundSnippet | None] = {}
        self._resources = _LazyDefinitions(tuple(self._parsed), self._bound_resource)
        self._required_attributes: dict[str, frozenset[str]] | None = None
        if validate:
            # A resource or output whose snippets failed to parse would only fail again.
            failed = {_section_item(error.where) for error in template.errors}
            self._bind_all(errors, failed)
        errors.check()

    def _check_attributes(
        self,
        type_attributes: Callable[[str], Collection[str] | None],
        errors: ErrorCollector,
    ) -> None:
        """Every attribute that `get_attr` names must be one its resource's type has."""
        references = [
            *(r for refs in self._references.values() for r in refs),
            *(r for refs in self._output_references.values() if refs is not None for r in refs),
        ]
        for reference in references:
            if not isinstance(reference, GetAttr) or reference.resource_name not in self._parsed:
                continue
            attribute = reference.attribute_name
            resource_type = self._types[reference.resource_name]
            child = self._children.get(reference.resource_name)
            known = child.outputs if child is not None else type_attributes(resource_type)
            if attribute is None or known is None or attribute in known:
                continue
            errors.add(
                TemplateError(
                    reference.where,
                    f"unknown attribute {attribute!r} of resource {reference.resource_name!r} "
                    f"({resource_type} has {', '.join(sorted(known)) or 'no attributes'})",
                )
            )

    def _check_immutable(self, values: Mapping[str, Any], previous: StackDefinition) -> None:
        # Immutability is read from the new template, as in Heat.
        schemas = self.template.parameter_schemas
        before = previous.parameter_values
        changed = changed_immutable_parameters(schemas, values, before)
        if changed:
            details = ", ".join(
                name
                if schemas[name].hidden
                else f"{name} ({schemas[name].shown(before[name])} -> "
                f"{schemas[name].shown(values[name])})"
                for name in changed
            )
            raise TemplateError(
                f"parameters.{changed[0]}", f"immutable parameters cannot be changed: {details}"
            )

    def _resource_types(
        self,
        resources: list[ParsedResource],
        environment: Environment,
        type_exists: Callable[[str], bool] | None,
        errors: ErrorCollector,
    ) -> dict[str, str]:
        """Resource name -> registered type or template file, for the enabled resources (an
        unknown one is kept in `errors`, and mapped to its resolved name all the same);
        template resources' children are loaded and checked on the way."""
        types: dict[str, str] = {}
        for parsed in resources:
            where = f"{parsed.where}.type"
            types[parsed.name] = parsed.type
            with errors.part():
                resolution = environment.resolve(parsed.type, parsed.name)
                types[parsed.name] = resolution.type
                alias = (
                    f" (mapped from {parsed.type!r} by the resource_registry)"
                    if resolution.type != parsed.type
                    else ""
                )
                if is_template_type(resolution.type):
                    child = load_child(parsed.name, resolution, environment, self._files, where)
                    self._children[parsed.name] = child
                    check_properties(parsed.properties, child, parsed.where)
                    check_tree(child, self._files, type_exists, (), where)
                elif resolution.type == TEMPLATE_RESOURCE_TYPE:
                    raise TemplateError(
                        where,
                        f"{TEMPLATE_RESOURCE_TYPE} runs template resources: write the "
                        f"template's file name as the type (e.g. server.yaml){alias}",
                    )
                elif type_exists is not None and not type_exists(resolution.type):
                    raise TemplateError(where, f"unknown resource type {resolution.type!r}{alias}")
        return types

    def _bind_map(self, snippet: Any, where: str) -> _BoundSnippet:
        value, dynamic = bind_snippet(snippet, self._scope)
        if value is REMOVED or value is None:
            return _BoundSnippet({}, False)
        if isinstance(value, Function):
            raise TemplateError(
                where,
                "must not depend on other resources as a whole; "
                "use get_resource/get_attr inside its entries",
            )
        if not isinstance(value, dict):
            raise TemplateError(where, f"expected a map, got {describe_value(value)}")
        return _BoundSnippet(value, dynamic)

    def _bound_resource(self, name: str) -> _BoundResource:
        bound = self._bound.get(name)
        if bound is not None:
            return bound
        parsed = self._parsed.get(name)
        if parsed is None:
            raise TemplateError(
                f"resources.{name}", "not an enabled resource of this stack definition"
            )
        properties = self._bind_map(parsed.properties, f"{parsed.where}.properties")
        child = self._children.get(name)
        if child is not None:
            check_values(properties.value, child, parsed.where)
            # What the template resource type runs: the child's template, environment and
            # files, with the properties as its parameters.
            properties = _BoundSnippet(
                child.properties(properties.value, self._files), properties.dynamic
            )
        metadata = self._bind_map(parsed.metadata, f"{parsed.where}.metadata")
        update_policy = self._bind_map(parsed.update_policy, f"{parsed.where}.update_policy")
        deletion_policy, _ = bind_snippet(parsed.deletion_policy, self._scope)
        definition = ResourceDefinition(
            name=name,
            type=self._types[name],
            bound_properties=properties,
            # depends_on a disabled resource is dropped, as in Heat.
            depends_on=tuple(
                required for required in parsed.depends_on if required in self._parsed
            ),
            deletion_policy=self.template.deletion_policy(
                None if deletion_policy is REMOVED else deletion_policy,
                f"{parsed.where}.deletion_policy",
            ),
            update_policy=update_policy.value,
            metadata=metadata.render(),
        )
        bound = _BoundResource(definition, properties, metadata)
        self._bound[name] = bound
        return bound

    def _bound_output(self, name: str) -> _BoundSnippet | None:
        if name not in self._bound_outputs:
            if self._output_references[name] is None:
                self._bound_outputs[name] = None
            else:
                value, dynamic = bind_snippet(self.template.parsed_outputs[name].value, self._scope)
                self._bound_outputs[name] = _BoundSnippet(
                    None if value is REMOVED else value, dynamic
                )
        return self._bound_outputs[name]

    def validate(self) -> None:
        """Bind every enabled resource and output now (their functions evaluated with the
        parameters); raise TemplateError (every one found). Do it once when a stack accepts
        a new template or new parameters, so that such errors stop it before any traversal
        starts (or construct with `validate=True`)."""
        errors = ErrorCollector()
        self._bind_all(errors)
        errors.check()

    def _bind_all(self, errors: ErrorCollector, skip: Collection[str] = ()) -> None:
        for name in self._parsed:
            if f"resources.{name}" not in skip:
                with errors.part():
                    self._bound_resource(name)
        for name in self._output_references:
            if f"outputs.{name}" not in skip:
                with errors.part():
                    self._bound_output(name)

    @property
    def resources(self) -> Mapping[str, ResourceDefinition]:
        """Enabled resources by logical name."""
        return self._resources

    def dependencies(self) -> Mapping[str, frozenset[str]]:
        """Logical name -> names it requires (depends_on, get_resource, get_attr)."""
        return self._dependencies

    def required_attributes(self, name: str) -> frozenset[str]:
        """Top-level attribute names of `name` that resources or outputs reference
        (paths are applied at resolution); contains ALL_ATTRIBUTES for `[name]` alone."""
        if self._required_attributes is None:
            required: dict[str, set[str]] = {}
            for references in (
                *self._references.values(),
                *(refs for refs in self._output_references.values() if refs is not None),
            ):
                for reference in references:
                    if isinstance(reference, GetAttr):
                        attribute = reference.attribute_name
                        required.setdefault(reference.resource_name, set()).add(
                            ALL_ATTRIBUTES if attribute is None else attribute
                        )
            self._required_attributes = {
                resource: frozenset(attributes) for resource, attributes in required.items()
            }
        return self._required_attributes.get(name, frozenset())

    def property_references(self, name: str) -> Mapping[str, tuple[ResourceReference, ...]]:
        """Each property of `name` whose value still needs other resources' data -> the
        get_resource/get_attr calls in it (bound: conditions applied, names known)."""
        bound = self._bound_resource(name).properties
        if not bound.dynamic:
            return {}
        found = {key: tuple(_references_in(item)) for key, item in bound.value.items()}
        return {key: references for key, references in found.items() if references}

    def resolve_properties(self, name: str, data: Mapping[str, ResourceData]) -> dict[str, Any]:
        """Properties of `name` with every function resolved against `data`."""
        return self._bound_resource(name).properties.resolve(data)  # type: ignore[no-any-return]

    def resolve_metadata(self, name: str, data: Mapping[str, ResourceData]) -> dict[str, Any]:
        """Metadata of `name` with every function resolved against `data`."""
        return self._bound_resource(name).metadata.resolve(data)  # type: ignore[no-any-return]

    def resolve_outputs(self, data: Mapping[str, ResourceData]) -> dict[str, Any]:
        """Outputs by name; an output whose condition is false is None."""
        outputs: dict[str, Any] = {}
        for name in self._output_references:
            bound = self._bound_output(name)
            outputs[name] = None if bound is None else bound.resolve(data)
        return outputs

    @property
    def parameter_values(self) -> Mapping[str, Any]:
        """Parameter values after defaults and type coercion."""
        return self._parameter_values

    @property
    def hidden_parameters(self) -> frozenset[str]:
        """Names of parameters declared hidden: never shown in status or events."""
        return frozenset(
            name for name, schema in self.template.parameter_schemas.items() if schema.hidden
        )
