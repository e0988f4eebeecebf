"""Heat Orchestration Templates (HOT): parsing, validation and the definitions a traversal
converges to.

A `Template` is the parsed, statically validated document. A `StackDefinition`
binds it to parameter values, a stack identity and the environment's
resource_registry aliases: it knows which resources are enabled (conditions),
what each one requires, which attributes of each are referenced, and how to
resolve properties and outputs once the data of the required resources
(reference id and attributes) has arrived through the sync points.

CONTRACT (used by the traversal; keep these names and signatures stable):
  TemplateError, Template.parse, Template.empty, StackIdentity, ResourceData,
  ResourceDefinition, ALL_ATTRIBUTES, StackDefinition(...) and its members below.

Cost: a Template parses every snippet into function objects once (and parsing
the same YAML text again is a cache hit); a StackDefinition walks each snippet
once more to bind parameters and conditions, and caches the dependency
analysis; resolve_properties then walks only the one resource's bound snippet.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from convergence.operator.engine.functions import (
    REMOVED,
    Function,
    GetAttr,
    Outline,
    SnippetParser,
    TemplateError,
    TemplateNames,
    bind_snippet,
    condition_value,
    describe_value,
    json_copy,
    outline_references,
    render_snippet,
    resolve_snippet,
)
from convergence.operator.engine.parameters import (
    PROJECT_ID,
    PSEUDO_PARAMETERS,
    STACK_ID,
    STACK_NAME,
    ParameterSchema,
    bind_parameter_values,
    changed_immutable_parameters,
    parse_parameter_schemas,
    validate_parameter_groups,
)

__all__ = [
    "ALL_ATTRIBUTES",
    "HOT_VERSIONS",
    "LATEST_VERSION",
    "VERSION_NAMES",
    "ResourceData",
    "ResourceDefinition",
    "StackDefinition",
    "StackIdentity",
    "Template",
    "TemplateError",
]

# Every heat_template_version Heat knows, oldest first; dates compare as strings.
HOT_VERSIONS = (
    "2013-05-23",
    "2014-10-16",
    "2015-04-30",
    "2015-10-15",
    "2016-04-08",
    "2016-10-14",
    "2017-02-24",
    "2017-09-01",
    "2018-03-02",
    "2018-08-31",
    "2021-04-16",
)
VERSION_NAMES = {
    "newton": "2016-10-14",
    "ocata": "2017-02-24",
    "pike": "2017-09-01",
    "queens": "2018-03-02",
    "rocky": "2018-08-31",
    "wallaby": "2021-04-16",
}
LATEST_VERSION = HOT_VERSIONS[-1]
_CONDITIONS_SINCE = "2016-10-14"
_LOWERCASE_POLICIES_SINCE = "2016-10-14"

_SECTIONS = (
    "heat_template_version",
    "description",
    "parameter_groups",
    "parameters",
    "resources",
    "outputs",
)
_RESOURCE_KEYS = (
    "type",
    "properties",
    "metadata",
    "depends_on",
    "deletion_policy",
    "update_policy",
    "description",
)
_OUTPUT_KEYS = ("value", "description")


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


@dataclass(frozen=True)
class ResourceDefinition:
    """One enabled resource of a StackDefinition, properties still unresolved."""

    name: str
    type: str  # after resource_registry aliases
    properties: Mapping[str, Any]  # snippet with get_resource/get_attr still in it
    depends_on: tuple[str, ...] = ()
    deletion_policy: str = "Delete"  # "Delete" | "Retain"
    update_policy: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


# -- loading documents ---------------------------------------------------------------------------


class _TemplateLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """The loader of yaml.safe_load (libyaml's when built in), except that timestamps stay
    strings, as in Heat: `heat_template_version: 2021-04-16` must not become a date."""


_TemplateLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)


def _json_document(value: Any, path: str) -> Any:
    """A JSON copy of a loaded document; anything JSON cannot hold is an error at its path."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(path, f"{value} is not a valid JSON number")
        return value
    if isinstance(value, Mapping):
        document: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool) or key is None:
                raise TemplateError(
                    path or "template",
                    f"the key {describe_value(key)} is not a string; quote it (YAML reads "
                    "yes/no/on/off/true/false/null unquoted as booleans or null)",
                )
            if isinstance(key, (int, float)):
                key = str(key)
            elif not isinstance(key, str):
                raise TemplateError(path or "template", f"the key {key!r} is not a string")
            document[key] = _json_document(item, f"{path}.{key}" if path else key)
        return document
    if isinstance(value, (list, tuple)):
        return [_json_document(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TemplateError(path or "template", f"{value!r} is not a JSON value")


def _load_document(text: str) -> Any:
    if text.lstrip().startswith("{"):
        # JSON is YAML, and json is two orders of magnitude faster than PyYAML.
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        return yaml.load(text, Loader=_TemplateLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as error:
        raise TemplateError("template", f"invalid YAML: {error}") from None


def _section_map(document: Mapping[str, Any], section: str) -> dict[str, Any]:
    value = document.get(section)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TemplateError(section, f"expected a map, got {describe_value(value)}")
    return value


def _canonical_version(document: Mapping[str, Any]) -> str:
    for cfn_key in ("AWSTemplateFormatVersion", "HeatTemplateFormatVersion"):
        if cfn_key in document:
            raise TemplateError(
                cfn_key,
                "CFN-format templates are not supported by Convergence; "
                "write a HOT template with heat_template_version",
            )
    known = ", ".join(
        [*HOT_VERSIONS, *(f"{name} ({date})" for name, date in VERSION_NAMES.items())]
    )
    if "heat_template_version" not in document:
        raise TemplateError("heat_template_version", f"is required; one of {known}")
    version = document["heat_template_version"]
    if isinstance(version, str):
        version = VERSION_NAMES.get(version, version)
    if version not in HOT_VERSIONS:
        raise TemplateError(
            "heat_template_version", f"unknown version {describe_value(version)}; one of {known}"
        )
    assert isinstance(version, str)
    return version


# -- the parsed template -------------------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedResource:
    name: str
    type: str
    properties: Any
    metadata: Any
    outline: Outline  # of properties and metadata: what the resource may require
    depends_on: tuple[str, ...]
    deletion_policy: Any
    update_policy: Any
    condition: Any  # None when unconditional

    @property
    def where(self) -> str:
        return f"resources.{self.name}"


@dataclass(frozen=True)
class _ParsedOutput:
    name: str
    value: Any
    outline: Outline
    description: str | None
    condition: Any


def _check_keys(where: str, definition: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(definition) - set(allowed))
    if unknown:
        raise TemplateError(
            where, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(allowed)}"
        )


class Template:
    """A parsed HOT document (JSON-serialisable `raw`). Treat it as immutable."""

    raw: Mapping[str, Any]
    version: str  # the dated heat_template_version (names such as "wallaby" resolved)
    description: str | None
    parameter_schemas: Mapping[str, ParameterSchema]

    @classmethod
    def parse(cls, source: str | Mapping[str, Any]) -> Template:
        """Parse YAML text or a mapping; raise TemplateError on any static error."""
        if isinstance(source, str):
            return _parse_text(source)
        if isinstance(source, Mapping):
            return cls(_json_document(source, ""))
        raise TemplateError(
            "template", f"expected YAML text or a map, got {describe_value(source)}"
        )

    @classmethod
    def empty(cls) -> Template:
        """The empty template (what a delete converges to)."""
        return cls({"heat_template_version": LATEST_VERSION})

    def __init__(self, document: Any) -> None:
        """Validate a JSON document (use `parse`)."""
        if not isinstance(document, dict):
            raise TemplateError(
                "template", f"expected a map of template sections, got {describe_value(document)}"
            )
        self.raw = document
        self.version = _canonical_version(document)
        sections = _SECTIONS + (("conditions",) if self.version >= _CONDITIONS_SINCE else ())
        for section in document:
            if section not in sections:
                hint = (
                    f" (conditions need heat_template_version {_CONDITIONS_SINCE} or later)"
                    if section == "conditions"
                    else ""
                )
                raise TemplateError(
                    section,
                    f"unknown template section; expected {', '.join(sections)}{hint}",
                )
        description = document.get("description")
        if description is not None and not isinstance(description, str):
            raise TemplateError(
                "description", f"expected a string, got {describe_value(description)}"
            )
        self.description = description
        self.parameter_schemas = MappingProxyType(
            parse_parameter_schemas(document.get("parameters"), self.version)
        )
        validate_parameter_groups(document.get("parameter_groups"), list(self.parameter_schemas))

        raw_conditions = _section_map(document, "conditions")
        raw_resources = _section_map(document, "resources")
        raw_outputs = _section_map(document, "outputs")
        for name in raw_resources:
            if not name or "/" in name:
                raise TemplateError(
                    f"resources.{name}", "a resource name must be non-empty and without '/'"
                )
        names = TemplateNames(
            parameters=frozenset(self.parameter_schemas) | frozenset(PSEUDO_PARAMETERS),
            resources=frozenset(raw_resources),
            conditions=frozenset(raw_conditions),
        )
        parser = SnippetParser(self.version, names)
        self._conditions = {
            name: parser.parse_condition(definition, f"conditions.{name}")
            for name, definition in raw_conditions.items()
        }
        self._resources = {
            name: self._parse_resource(parser, name, definition)
            for name, definition in raw_resources.items()
        }
        self._outputs = {
            name: self._parse_output(parser, name, definition)
            for name, definition in raw_outputs.items()
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Template {self.version}: {len(self._resources)} resources>"

    @property
    def resource_names(self) -> tuple[str, ...]:
        """All resources of the template in order, enabled or not."""
        return tuple(self._resources)

    def _parse_condition_key(self, parser: SnippetParser, definition: Any, where: str) -> Any:
        if "condition" not in definition:
            return None
        condition = parser.parse_condition(definition["condition"], where)
        if isinstance(condition, str) and condition not in parser.names.conditions:
            raise TemplateError(where, f"unknown condition {condition!r}")
        if not isinstance(condition, (str, bool, Function)):
            raise TemplateError(
                where,
                "expected a condition name, a boolean or a condition function, got "
                + describe_value(definition["condition"]),
            )
        return condition

    def _parse_resource(self, parser: SnippetParser, name: str, definition: Any) -> _ParsedResource:
        where = f"resources.{name}"
        if not isinstance(definition, dict):
            raise TemplateError(
                where, f"expected a map with a type, got {describe_value(definition)}"
            )
        allowed: tuple[str, ...] = _RESOURCE_KEYS
        if self.version >= _CONDITIONS_SINCE:
            allowed += ("condition",)
            if "external_id" in definition:
                raise TemplateError(
                    f"{where}.external_id",
                    "external_id is not supported by Convergence (resources are not adopted)",
                )
        _check_keys(where, definition, allowed)
        resource_type = definition.get("type")
        if not isinstance(resource_type, str) or not resource_type:
            raise TemplateError(
                f"{where}.type",
                f"expected a resource type name, got {describe_value(resource_type)}",
            )
        description = definition.get("description")
        if description is not None and not isinstance(description, str):
            raise TemplateError(f"{where}.description", "expected a string")

        def parsed_map(key: str) -> tuple[Any, Outline]:
            value = definition.get(key)
            if value is None:
                return {}, ()
            parsed, outline = parser.parse_outlined(value, f"{where}.{key}")
            if not isinstance(parsed, (dict, Function)):
                raise TemplateError(
                    f"{where}.{key}", f"expected a map, got {describe_value(value)}"
                )
            return parsed, outline

        def parsed_policy(key: str) -> Any:
            parsed, outline = parser.parse_outlined(definition.get(key), f"{where}.{key}")
            if outline:
                raise TemplateError(f"{where}.{key}", "must not refer to resources")
            return parsed

        depends_on = definition.get("depends_on")
        if depends_on is None:
            depends_on = []
        elif isinstance(depends_on, str):
            depends_on = [depends_on]
        if not isinstance(depends_on, list):
            raise TemplateError(
                f"{where}.depends_on",
                f"expected a resource name or a list of them, got {describe_value(depends_on)}",
            )
        for required in depends_on:
            if not isinstance(required, str) or required not in parser.names.resources:
                raise TemplateError(
                    f"{where}.depends_on", f"unknown resource {describe_value(required)}"
                )

        deletion_policy = parsed_policy("deletion_policy")
        if not isinstance(deletion_policy, Function):
            self._deletion_policy(deletion_policy, f"{where}.deletion_policy")
        update_policy = parsed_policy("update_policy")
        if not isinstance(update_policy, (dict, Function, type(None))):
            raise TemplateError(
                f"{where}.update_policy", f"expected a map, got {describe_value(update_policy)}"
            )
        properties, properties_outline = parsed_map("properties")
        metadata, metadata_outline = parsed_map("metadata")
        return _ParsedResource(
            name=name,
            type=resource_type,
            properties=properties,
            metadata=metadata,
            outline=properties_outline + metadata_outline,
            depends_on=tuple(dict.fromkeys(depends_on)),
            deletion_policy=deletion_policy,
            update_policy=update_policy,
            condition=self._parse_condition_key(parser, definition, f"{where}.condition"),
        )

    def _deletion_policy(self, value: Any, where: str) -> str:
        """The normalised deletion policy ("Delete" or "Retain")."""
        if value is None:
            return "Delete"
        allowed = ["Delete", "Retain"]
        if self.version >= _LOWERCASE_POLICIES_SINCE:
            allowed += ["delete", "retain"]
        if value in allowed:
            return str(value).capitalize()
        if value in ("Snapshot", "snapshot"):
            raise TemplateError(
                where, "the Snapshot deletion policy is not supported by Convergence"
            )
        raise TemplateError(
            where, f"expected one of {', '.join(allowed)}, got {describe_value(value)}"
        )

    def _parse_output(self, parser: SnippetParser, name: str, definition: Any) -> _ParsedOutput:
        where = f"outputs.{name}"
        if not isinstance(definition, dict) or "value" not in definition:
            raise TemplateError(
                where, f"expected a map with a value, got {describe_value(definition)}"
            )
        allowed = _OUTPUT_KEYS + (("condition",) if self.version >= _CONDITIONS_SINCE else ())
        _check_keys(where, definition, allowed)
        description = definition.get("description")
        if description is not None and not isinstance(description, str):
            raise TemplateError(f"{where}.description", "expected a string")
        value, outline = parser.parse_outlined(definition["value"], f"{where}.value")
        return _ParsedOutput(
            name=name,
            value=value,
            outline=outline,
            description=description,
            condition=self._parse_condition_key(parser, definition, f"{where}.condition"),
        )


@functools.lru_cache(maxsize=8)
def _parse_text(text: str) -> Template:
    # Worker steps parse the same stored template again and again.
    return Template(_json_document(_load_document(text), ""))


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
        definitions = self.template._conditions
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


def _resolve_type(resource_type: str, registry: Mapping[str, str]) -> str:
    """Follow resource_registry aliases: exact names first, then the longest `prefix*` glob
    (a glob value ending in `*` keeps the rest of the name, as in Heat)."""
    seen = [resource_type]
    current = resource_type
    while True:
        target = registry.get(current)
        if target is None:
            globs = [
                pattern
                for pattern in registry
                if pattern.endswith("*")
                and current.startswith(pattern[:-1])
                and registry[pattern] != current
            ]
            if not globs:
                return current
            pattern = max(globs, key=len)
            target = registry[pattern]
            if target.endswith("*"):
                target = target[:-1] + current[len(pattern) - 1 :]
        if target == current:
            return current
        if target in seen:
            raise TemplateError("resource_registry", f"alias loop: {' -> '.join([*seen, target])}")
        seen.append(target)
        current = target


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
        type_exists: Callable[[str], bool] | None = None,
        previous: StackDefinition | None = None,
    ) -> None:
        """Validate parameters (types, constraints, required, immutable vs `previous`),
        evaluate conditions, resolve type aliases and check types with `type_exists`,
        detect dependency cycles. Raise TemplateError."""
        self.template = template
        self.identity = identity
        values = bind_parameter_values(template.parameter_schemas, parameters)
        if previous is not None:
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
        for name in template._conditions:
            scope.condition(name, f"conditions.{name}")
        enabled = {
            name: scope.is_enabled(parsed.condition, f"{parsed.where}.condition")
            for name, parsed in template._resources.items()
        }
        scope.enabled = enabled
        self._scope = scope
        self.conditions: Mapping[str, bool] = MappingProxyType(scope.conditions)
        """The value of every condition of the `conditions` section."""

        self._parsed = {
            name: parsed for name, parsed in template._resources.items() if enabled[name]
        }
        self._types = self._resource_types(
            list(self._parsed.values()), resource_registry or {}, type_exists
        )
        # The references of each enabled resource, and of each enabled output (None
        # for an output whose condition is false).
        self._references = {
            name: tuple(outline_references(parsed.outline, scope))
            for name, parsed in self._parsed.items()
        }
        self._output_references = {
            name: tuple(outline_references(output.outline, scope))
            if scope.is_enabled(output.condition, f"outputs.{name}.condition")
            else None
            for name, output in template._outputs.items()
        }
        self._dependencies = MappingProxyType(
            {
                name: frozenset(required for required in parsed.depends_on if enabled[required])
                | {reference.resource_name for reference in self._references[name]}
                for name, parsed in self._parsed.items()
            }
        )
        cycle = _find_cycle(list(self._parsed), self._dependencies)
        if cycle:
            raise TemplateError(f"resources.{cycle[0]}", f"dependency cycle: {' -> '.join(cycle)}")
        self._bound: dict[str, _BoundResource] = {}
        self._bound_outputs: dict[str, _BoundSnippet | None] = {}
        self._resources = _LazyDefinitions(tuple(self._parsed), self._bound_resource)
        self._required_attributes: dict[str, frozenset[str]] | None = None

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

    @staticmethod
    def _resource_types(
        resources: list[_ParsedResource],
        registry: Mapping[str, str],
        type_exists: Callable[[str], bool] | None,
    ) -> dict[str, str]:
        """Template type -> registered type, for the types of the enabled resources."""
        types: dict[str, str] = {}
        for parsed in resources:
            if parsed.type in types:
                continue
            resolved = _resolve_type(parsed.type, registry)
            if type_exists is not None and not type_exists(resolved):
                alias = (
                    f" (mapped from {parsed.type!r} by the resource_registry)"
                    if resolved != parsed.type
                    else ""
                )
                raise TemplateError(
                    f"{parsed.where}.type", f"unknown resource type {resolved!r}{alias}"
                )
            types[parsed.type] = resolved
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
        metadata = self._bind_map(parsed.metadata, f"{parsed.where}.metadata")
        update_policy = self._bind_map(parsed.update_policy, f"{parsed.where}.update_policy")
        deletion_policy, _ = bind_snippet(parsed.deletion_policy, self._scope)
        definition = ResourceDefinition(
            name=name,
            type=self._types[parsed.type],
            properties=properties.render(),
            # depends_on a disabled resource is dropped, as in Heat.
            depends_on=tuple(
                required for required in parsed.depends_on if required in self._parsed
            ),
            deletion_policy=self.template._deletion_policy(
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
                value, dynamic = bind_snippet(self.template._outputs[name].value, self._scope)
                self._bound_outputs[name] = _BoundSnippet(
                    None if value is REMOVED else value, dynamic
                )
        return self._bound_outputs[name]

    def validate(self) -> None:
        """Bind every enabled resource and output now (their functions evaluated with the
        parameters); raise TemplateError. Do it once when a stack accepts a new template
        or new parameters, so that such errors stop it before any traversal starts."""
        for name in self._parsed:
            self._bound_resource(name)
        for name in self._output_references:
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
