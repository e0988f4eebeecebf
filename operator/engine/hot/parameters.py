"""Template parameters: declared schemas, the binding of user values, pseudo parameters.

A HOT template declares each parameter's type, default and constraints. Each
value a stack is given is coerced to its declared type as Heat does (see
`coercion`) and then checked against the constraints (see `constraints`).
Schemas are parsed once per template; values are bound once per stack
definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from convergence.operator.engine.hot.coercion import (
    PARAMETER_TYPES,
    ParameterValueError,
    as_boolean,
    coerce_value,
)
from convergence.operator.engine.hot.constraints import Constraint, parse_constraint
from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError, describe_value
from convergence.operator.engine.hot.functions.snippets import json_copy

# Values of the pseudo parameters come from the stack identity, never the user.
STACK_NAME = "OS::stack_name"
STACK_ID = "OS::stack_id"
PROJECT_ID = "OS::project_id"
PSEUDO_PARAMETERS = (STACK_NAME, STACK_ID, PROJECT_ID)

_TAGS_SINCE = "2018-03-02"
_HIDDEN_VALUE = "******"
# What a parameter whose value is wrong stands for while the rest of a template is checked.
_EMPTY_VALUES = {
    "string": "",
    "number": 0,
    "boolean": False,
    "json": {},
    "comma_delimited_list": [],
}


_SCHEMA_KEYS = ("type", "description", "default", "constraints", "hidden", "label", "immutable")


@dataclass(frozen=True)
class ParameterSchema:
    """One declared parameter of a template."""

    name: str
    type: str
    default: Any = None  # already coerced to `type`; None means "required"
    description: str | None = None
    label: str | None = None
    hidden: bool = False
    immutable: bool = False
    tags: tuple[str, ...] = ()
    constraints: tuple[Constraint, ...] = ()

    @property
    def where(self) -> str:
        """Where errors about this parameter point."""
        return f"parameters.{self.name}"

    @property
    def required(self) -> bool:
        """A parameter without a default needs a value from the user."""
        return self.default is None

    @classmethod
    def from_template(cls, name: str, definition: Any, version: str) -> ParameterSchema:
        """Parse one entry of the `parameters` section (raises TemplateError)."""
        where = f"parameters.{name}"
        if name in PSEUDO_PARAMETERS:
            raise TemplateError(where, f"{name} is a pseudo parameter; it cannot be declared")
        if not isinstance(definition, Mapping):
            raise TemplateError(
                where, f"expected a map with at least a type, got {describe_value(definition)}"
            )
        allowed = _SCHEMA_KEYS + (("tags",) if version >= _TAGS_SINCE else ())
        unknown = sorted(set(definition) - set(allowed))
        if unknown:
            hint = (
                f" (tags need heat_template_version {_TAGS_SINCE} or later)"
                if "tags" in unknown
                else ""
            )
            raise TemplateError(
                where, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(allowed)}{hint}"
            )
        parameter_type = definition.get("type")
        if parameter_type not in PARAMETER_TYPES:
            raise TemplateError(
                f"{where}.type",
                f"expected one of {', '.join(PARAMETER_TYPES)}, "
                f"got {describe_value(parameter_type)}",
            )
        for key in ("description", "label"):
            if definition.get(key) is not None and not isinstance(definition[key], str):
                raise TemplateError(f"{where}.{key}", "expected a string")
        flags = {}
        for key in ("hidden", "immutable"):
            try:
                flags[key] = as_boolean(definition.get(key, False))
            except ParameterValueError as error:
                raise TemplateError(f"{where}.{key}", str(error)) from None
        tags = definition.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise TemplateError(f"{where}.tags", "expected a list of strings")
        raw_constraints = definition.get("constraints") or []
        if not isinstance(raw_constraints, list):
            raise TemplateError(f"{where}.constraints", "expected a list of constraints")
        constraints = tuple(
            parse_constraint(item, parameter_type, version, f"{where}.constraints[{index}]")
            for index, item in enumerate(raw_constraints)
        )
        schema = cls(
            name=name,
            type=parameter_type,
            description=definition.get("description"),
            label=definition.get("label"),
            hidden=flags["hidden"],
            immutable=flags["immutable"],
            tags=tuple(tags),
            constraints=constraints,
        )
        raw_default = definition.get("default")
        if raw_default is None:
            return schema
        try:
            default = schema.coerce(raw_default)
            schema.check_constraints(default)
        except TemplateError as error:
            raise TemplateError(f"{where}.default", f"invalid default: {error.message}") from None
        return replace(schema, default=default)

    def coerce(self, value: Any) -> Any:
        """The value in this parameter's type (raises TemplateError saying what was expected)."""
        try:
            return coerce_value(self.type, value)
        except ParameterValueError as error:
            reason = f"expected a {self.type} (the value is hidden)" if self.hidden else error
            raise TemplateError(self.where, f"{self.type} parameter: {reason}") from None

    def shown(self, value: Any) -> str:
        """How a value appears in messages (never the value of a hidden parameter)."""
        if self.hidden:
            return _HIDDEN_VALUE
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + "..."

    def check_constraints(self, value: Any) -> None:
        """Raise TemplateError naming the first violated constraint (its description first)."""
        for constraint in self.constraints:
            message = constraint.message(value, self.shown(value))
            if message is not None:
                raise TemplateError(self.where, message)


def parse_parameter_schemas(
    section: Any, version: str, errors: ErrorCollector | None = None
) -> dict[str, ParameterSchema]:
    """Parse the `parameters` section (None is an empty section).

    With `errors`, a bad declaration is kept there and left out, and the others
    are parsed; without, the first one raises.
    """
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise TemplateError("parameters", f"expected a map, got {describe_value(section)}")
    collector = errors if errors is not None else ErrorCollector()
    schemas: dict[str, ParameterSchema] = {}
    for name, definition in section.items():
        with collector.part():
            schemas[name] = ParameterSchema.from_template(name, definition, version)
    if errors is None:
        collector.check()
    return schemas


def bind_parameter_values(
    schemas: Mapping[str, ParameterSchema],
    user_values: Mapping[str, Any],
    errors: ErrorCollector | None = None,
) -> dict[str, Any]:
    """Every declared parameter's value: the user's (coerced, constrained) or the default.

    A user value of None counts as not given. Raises TemplateError for an undeclared
    name, a missing required value, a value of the wrong type or a constraint violation
    (with `errors`, keeps each there instead and gives a bad parameter its default, else
    the empty value of its type, so that the rest of the template can still be checked).
    """
    collector = errors if errors is not None else ErrorCollector()
    for name in sorted(name for name in user_values if name not in schemas):
        if name in PSEUDO_PARAMETERS:
            collector.add(
                TemplateError(
                    f"parameters.{name}",
                    "pseudo parameters come from the stack identity and cannot be given",
                )
            )
        else:
            declared = ", ".join(schemas) or "none"
            collector.add(
                TemplateError(
                    f"parameters.{name}",
                    f"not declared in the template (declared parameters: {declared})",
                )
            )
    values: dict[str, Any] = {}
    for name, schema in schemas.items():
        values[name] = json_copy(schema.default) if schema.default is not None else None
        given = user_values.get(name)
        with collector.part():
            if given is None:
                if schema.default is None:
                    raise TemplateError(
                        schema.where, "a value is required (no default is declared)"
                    )
                continue
            value = schema.coerce(given)
            schema.check_constraints(value)
            values[name] = value
        if values[name] is None:
            values[name] = json_copy(_EMPTY_VALUES[schema.type])
    if errors is None:
        collector.check()
    return values


def changed_immutable_parameters(
    schemas: Mapping[str, ParameterSchema],
    values: Mapping[str, Any],
    previous_values: Mapping[str, Any],
) -> list[str]:
    """Names of immutable parameters (per the new schemas) whose value differs from before.

    Only parameters present before and now are compared, as in Heat.
    """
    return [
        name
        for name, schema in schemas.items()
        if schema.immutable
        and name in previous_values
        and name in values
        and previous_values[name] != values[name]
    ]


def validate_parameter_groups(groups: Any, declared: Sequence[str]) -> None:
    """Check `parameter_groups`: a list of {label, description, parameters: [declared names]},
    each parameter in at most one group."""
    if groups is None:
        return
    if not isinstance(groups, list):
        raise TemplateError("parameter_groups", f"expected a list, got {describe_value(groups)}")
    known = set(declared) | set(PSEUDO_PARAMETERS)
    grouped: dict[str, int] = {}
    for index, group in enumerate(groups):
        where = f"parameter_groups[{index}]"
        if not isinstance(group, Mapping):
            raise TemplateError(where, f"expected a map, got {describe_value(group)}")
        unknown = sorted(set(group) - {"label", "description", "parameters"})
        if unknown:
            raise TemplateError(
                where,
                f"unknown key(s) {', '.join(unknown)}; expected label, description, parameters",
            )
        for key in ("label", "description"):
            if group.get(key) is not None and not isinstance(group[key], str):
                raise TemplateError(f"{where}.{key}", "expected a string")
        names = group.get("parameters")
        if not isinstance(names, list):
            raise TemplateError(
                f"{where}.parameters", "each parameter group needs a list of parameter names"
            )
        for name in names:
            if not isinstance(name, str) or name not in known:
                raise TemplateError(
                    f"{where}.parameters",
                    f"{describe_value(name)} is not a declared parameter",
                )
            if name in grouped:
                raise TemplateError(
                    f"{where}.parameters",
                    f"parameter {name} is already in parameter_groups[{grouped[name]}]; "
                    "a parameter belongs to one group only",
                )
            grouped[name] = index
