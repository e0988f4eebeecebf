"""Template resources: a resource whose type is a template of the stack's files map.

As in Heat, a type ending in `.yaml` or `.template` (written in the template
or reached through the environment's `resource_registry`) names a file of the
Stack's `spec.files`; the resource is a nested stack of that template. Its
properties are the child template's parameters (a property the child does not
declare, a parameter without a default that no property nor
`parameter_defaults` gives, or a value known before the traversal that the
parameter's type or constraints refuse, is an error here, at the property's
path), its
attributes are the child's outputs, and the child gets the parent's files and
the environment Heat would give it (`Environment.child`).

Everything a template resource reaches is checked before the parent's
traversal starts, down the whole tree: every file exists and parses, every
type exists, and no template uses itself, directly or through others (Heat
stops such a nest at a depth limit; here it is an error naming the chain).

`TEMPLATE_RESOURCE_TYPE` is the resource type that runs template resources;
a template names it in no `type` (the file's name is the type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convergence.operator.engine.hot.environment import Environment, Resolution, is_template_type
from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError
from convergence.operator.engine.hot.functions.snippets import Function
from convergence.operator.engine.hot.loading import json_document, load_document
from convergence.operator.engine.hot.template import Template

TEMPLATE_RESOURCE_TYPE = "Convergence::TemplateResource"


@dataclass(frozen=True)
class ChildTemplate:
    """The nested stack a template resource makes: its template and environment."""

    file: str
    document: Mapping[str, Any]
    template: Template
    environment: Environment

    def properties(self, parameters: Any, files: Mapping[str, str]) -> dict[str, Any]:
        """The properties the template resource type gets: the child's template, its
        parameter values (the resource's properties as written), environment and files."""
        return {
            "template": self.document,
            "parameters": parameters,
            "environment": self.environment.as_dict(),
            "files": dict(files),
        }

    @property
    def outputs(self) -> frozenset[str]:
        """What `get_attr` may name on the resource."""
        return frozenset(self.template.parsed_outputs)


def load_child(
    resource: str,
    resolution: Resolution,
    environment: Environment,
    files: Mapping[str, str],
    where: str,
) -> ChildTemplate:
    """The child template of resource `resource`, whose type resolved to a template file;
    TemplateError at `where` (the resource's type) when it is missing or invalid."""
    file = resolution.type
    text = files.get(file)
    if text is None:
        known = ", ".join(sorted(files)) or "none"
        mapped = (
            f" (mapped from {resolution.mapped_from!r} by the resource_registry)"
            if resolution.mapped_from
            else ""
        )
        raise TemplateError(
            where, f"template {file!r}{mapped} is not in the stack's spec.files (files: {known})"
        )
    try:
        document = json_document(load_document(text), "")
        template = Template(document, files=files)
    except TemplateError as exc:
        raise TemplateError(where, f"template {file!r}: {exc}") from None
    return ChildTemplate(file, document, template, environment.child(resource, resolution))


def check_properties(properties: Any, child: ChildTemplate, where: str) -> None:
    """A template resource's properties (as parsed) against its child's parameters."""
    if not isinstance(properties, Mapping):
        return  # a function giving the whole map: its keys are known only when resolved
    schemas = child.template.parameter_schemas
    errors = ErrorCollector()
    for key in properties:
        if key not in schemas:
            declared = ", ".join(sorted(schemas)) or "none"
            errors.add(
                TemplateError(
                    f"{where}.properties.{key}",
                    f"unknown property: template {child.file!r} has no parameter {key!r} "
                    f"(its parameters: {declared})",
                )
            )
    for name, schema in schemas.items():
        given = name in properties or name in child.environment.parameter_defaults
        if schema.required and not given:
            errors.add(
                TemplateError(
                    f"{where}.properties",
                    f"missing required property {name!r} (a parameter of template "
                    f"{child.file!r} without a default)",
                )
            )
    errors.check()


def check_values(properties: Mapping[str, Any], child: ChildTemplate, where: str) -> None:
    """A template resource's bound property values that are known now (no get_resource or
    get_attr left in them) against the types and constraints of the child's parameters, as
    the child will check them: a bad one is refused here, at its property's path."""
    errors = ErrorCollector()
    for key, value in properties.items():
        schema = child.template.parameter_schemas.get(key)
        if schema is None or value is None or _has_function(value):
            continue
        try:
            schema.check_constraints(schema.coerce(value))
        except TemplateError as exc:
            errors.add(
                TemplateError(
                    f"{where}.properties.{key}",
                    f"{exc.message} (parameter {key!r} of template {child.file!r})",
                )
            )
    errors.check()


def _has_function(value: Any) -> bool:
    if isinstance(value, Function):
        return True
    if isinstance(value, Mapping):
        return any(_has_function(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_function(item) for item in value)
    return False


def check_tree(
    child: ChildTemplate,
    files: Mapping[str, str],
    type_exists: Callable[[str], bool] | None,
    path: tuple[str, ...],
    where: str,
) -> None:
    """Walk what `child` nests, every resource of it enabled or not: each template exists,
    parses and gets fitting properties, each type exists, and no template is on `path`
    (the templates above it) again. TemplateError at `where`, saying in which file."""
    chain = (*path, child.file)
    errors = ErrorCollector()
    for parsed in child.template.parsed_resources.values():
        inner = f"{parsed.where}.type"
        with errors.part():
            resolution = child.environment.resolve(parsed.type, parsed.name)
            if not is_template_type(resolution.type):
                if type_exists is not None and not type_exists(resolution.type):
                    raise TemplateError(inner, f"unknown resource type {resolution.type!r}")
                continue
            if resolution.type in chain:
                raise TemplateError(
                    inner,
                    "a template cannot use itself: " + " -> ".join((*chain, resolution.type)),
                )
            grandchild = load_child(parsed.name, resolution, child.environment, files, inner)
            check_properties(parsed.properties, grandchild, parsed.where)
            check_tree(grandchild, files, type_exists, chain, inner)
    try:
        errors.check()
    except TemplateError as exc:
        raise TemplateError(where, f"in template {child.file!r}: {exc}") from None
