"""Template parameters: declared schemas, coercion of user values, constraints, pseudo parameters.

A HOT template declares each parameter's type, default and constraints. Values
reach a stack from the user (the Stack's `spec.parameters`, often strings read
from a ConfigMap), so each value is coerced to its declared type as Heat does
(`"3"` is a number, `"yes"` a boolean, `"a,b"` a comma_delimited_list, a JSON
string a json value) and then checked against the constraints. Schemas are
parsed once per template; values are bound once per stack definition.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from convergence.operator.engine.functions import TemplateError, describe_value, json_copy

PARAMETER_TYPES = ("string", "number", "boolean", "json", "comma_delimited_list")

# Values of the pseudo parameters come from the stack identity, never the user.
STACK_NAME = "OS::stack_name"
STACK_ID = "OS::stack_id"
PROJECT_ID = "OS::project_id"
PSEUDO_PARAMETERS = (STACK_NAME, STACK_ID, PROJECT_ID)

# What oslo's strutils.bool_from_string accepts in strict mode (Heat's rule).
_TRUE_STRINGS = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE_STRINGS = frozenset({"0", "f", "false", "off", "n", "no"})

_MODULO_SINCE = "2017-02-24"
_TAGS_SINCE = "2018-03-02"
_HIDDEN_VALUE = "******"


class ParameterValueError(ValueError):
    """A value that cannot be coerced to a parameter type (message says what was expected)."""


def as_number(value: Any) -> int | float:
    """Coerce to int (preferred) or float like Heat's `str_to_num`; reject booleans and NaN."""
    if isinstance(value, bool):
        raise ParameterValueError(f"expected a number, got the boolean {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterValueError(f"expected a finite number, got {value}")
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            raise ParameterValueError(f"expected a number, got {describe_value(value)}") from None
        if not math.isfinite(number):
            raise ParameterValueError(f"expected a finite number, got {describe_value(value)}")
        return number
    raise ParameterValueError(f"expected a number, got {describe_value(value)}")


def as_boolean(value: Any) -> bool:
    """Coerce like Heat: true/false, and the strings 1/t/true/on/y/yes and 0/f/false/off/n/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        text = str(value).strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
    raise ParameterValueError(
        f"expected a boolean (true/false, yes/no, on/off, 1/0), got {describe_value(value)}"
    )


def as_string(value: Any) -> str:
    """Coerce a scalar to its string form (numbers and booleans as Python's str(), like Heat)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    raise ParameterValueError(f"expected a string, got {describe_value(value)}")


def as_comma_delimited_list(value: Any) -> list[str]:
    """Split "a,b" on commas (no stripping, like Heat; "" is []) or take a list of scalars."""
    if isinstance(value, str):
        return value.split(",") if value else []
    if isinstance(value, list):
        items: list[str] = []
        for item in value:
            if not isinstance(item, (str, bool, int, float)):
                raise ParameterValueError(
                    f"expected a list of strings, got an item {describe_value(item)}"
                )
            items.append(str(item))
        return items
    raise ParameterValueError(
        f"expected a comma-delimited string or a list, got {describe_value(value)}"
    )


def as_json(value: Any) -> dict[str, Any] | list[Any]:
    """Take a map or a list, or decode a JSON string holding one ("" is {})."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            decoded = json.loads(value)
        except ValueError as error:
            raise ParameterValueError(f"expected valid JSON: {error}") from None
        value = decoded
    if isinstance(value, Mapping):
        return json_copy(dict(value))  # type: ignore[no-any-return]
    if isinstance(value, list):
        return json_copy(value)  # type: ignore[no-any-return]
    raise ParameterValueError(f"expected a JSON map or list, got {describe_value(value)}")


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "string": as_string,
    "number": as_number,
    "boolean": as_boolean,
    "json": as_json,
    "comma_delimited_list": as_comma_delimited_list,
}


# -- constraints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraint:
    """One entry of a parameter's `constraints` list; `description` replaces the default message."""

    description: str | None

    kind: ClassVar[str] = ""  # the key naming the constraint in the template
    applies_to: ClassVar[frozenset[str]] = frozenset()

    def violation(self, value: Any, shown: str) -> str | None:
        """Why `value` (shown to the user as `shown`) violates the constraint, or None."""
        raise NotImplementedError

    def message(self, value: Any, shown: str) -> str | None:
        """The error for a violation: the template's description first, then the details."""
        reason = self.violation(value, shown)
        if reason is None:
            return None
        if self.description:
            return f"{self.description} ({self.kind}: {reason})"
        return f"{self.kind}: {reason}"


@dataclass(frozen=True)
class RangeConstraint(Constraint):
    """`range: {min, max}`, inclusive, on numbers."""

    min: int | float | None = None
    max: int | float | None = None

    kind = "range"
    applies_to = frozenset({"number"})

    def violation(self, value: Any, shown: str) -> str | None:
        number = as_number(value)
        if (self.min is not None and number < self.min) or (
            self.max is not None and number > self.max
        ):
            return f"{shown} is out of range (min: {self.min}, max: {self.max})"
        return None


@dataclass(frozen=True)
class LengthConstraint(Constraint):
    """`length: {min, max}`, inclusive, on strings, lists and json values."""

    min: int | None = None
    max: int | None = None

    kind = "length"
    applies_to = frozenset({"string", "comma_delimited_list", "json"})

    def violation(self, value: Any, shown: str) -> str | None:
        length = len(value)
        if (self.min is not None and length < self.min) or (
            self.max is not None and length > self.max
        ):
            return (
                f"the length of {shown} ({length}) is out of range "
                f"(min: {self.min}, max: {self.max})"
            )
        return None


@dataclass(frozen=True)
class ModuloConstraint(Constraint):
    """`modulo: {step, offset}` on numbers: value % step == offset (2017-02-24 and later)."""

    step: int = 1
    offset: int = 0

    kind = "modulo"
    applies_to = frozenset({"number"})

    def violation(self, value: Any, shown: str) -> str | None:
        if as_number(value) % self.step != self.offset:
            return f"{shown} is not a multiple of {self.step} with an offset of {self.offset}"
        return None


@dataclass(frozen=True)
class AllowedValuesConstraint(Constraint):
    """`allowed_values: [...]`; for a list every item must be allowed."""

    allowed: tuple[Any, ...] = ()
    parameter_type: str = "string"

    kind = "allowed_values"
    applies_to = frozenset({"string", "number", "boolean", "comma_delimited_list"})

    def _comparable(self, value: Any) -> Any:
        try:
            if self.parameter_type == "number":
                return as_number(value)
            if self.parameter_type == "boolean":
                return as_boolean(value)
            return as_string(value)
        except ParameterValueError:
            return value

    def violation(self, value: Any, shown: str) -> str | None:
        allowed = [self._comparable(item) for item in self.allowed]
        items = value if isinstance(value, list) else [value]
        if all(self._comparable(item) in allowed for item in items):
            return None
        listed = ", ".join(json.dumps(item) for item in self.allowed)
        return f"{shown} is not an allowed value [{listed}]"


@dataclass(frozen=True)
class AllowedPatternConstraint(Constraint):
    """`allowed_pattern: regex`; the whole string must match from its start (Heat's rule)."""

    pattern: str = ""
    compiled: re.Pattern[str] = field(default=re.compile(""), compare=False, repr=False)

    kind = "allowed_pattern"
    applies_to = frozenset({"string"})

    def violation(self, value: Any, shown: str) -> str | None:
        match = self.compiled.match(value)
        if match is None or match.end() != len(value):
            return f"{shown} does not match pattern {json.dumps(self.pattern)}"
        return None


def _constraint_bound(value: Any, where: str, *, integral: bool, name: str) -> int | float | None:
    if value is None:
        return None
    try:
        number = as_number(value)
    except ParameterValueError as error:
        raise TemplateError(where, f"{name} must be a number: {error}") from None
    if integral and number != int(number):
        raise TemplateError(where, f"{name} must be an integer, got {number}")
    return int(number) if integral else number


def _bounds(definition: Any, where: str, keys: tuple[str, str], *, integral: bool) -> list[Any]:
    if not isinstance(definition, Mapping):
        raise TemplateError(where, f"expected a map with {' and/or '.join(keys)}")
    unknown = sorted(set(definition) - set(keys))
    if unknown:
        raise TemplateError(
            where, f"unknown key(s) {', '.join(unknown)}; expected {' and/or '.join(keys)}"
        )
    return [
        _constraint_bound(definition.get(key), f"{where}.{key}", integral=integral, name=key)
        for key in keys
    ]


_CONSTRAINT_KINDS = (
    "length",
    "range",
    "modulo",
    "allowed_values",
    "allowed_pattern",
    "custom_constraint",
)


def _parse_constraint(definition: Any, parameter_type: str, version: str, where: str) -> Constraint:
    if not isinstance(definition, Mapping):
        raise TemplateError(
            where, f"expected a map such as {{range: {{min: 1}}}}, got {describe_value(definition)}"
        )
    unknown = sorted(set(definition) - {*_CONSTRAINT_KINDS, "description"})
    if unknown:
        raise TemplateError(
            where,
            f"unknown key(s) {', '.join(unknown)}; expected one of "
            f"{', '.join(_CONSTRAINT_KINDS)} and an optional description",
        )
    kinds = [kind for kind in _CONSTRAINT_KINDS if kind in definition]
    if len(kinds) != 1:
        raise TemplateError(
            where,
            "each constraint must name exactly one of "
            f"{', '.join(_CONSTRAINT_KINDS)} (found {', '.join(kinds) or 'none'})",
        )
    kind = kinds[0]
    description = definition.get("description")
    if description is not None and not isinstance(description, str):
        raise TemplateError(f"{where}.description", "expected a string")
    body = definition[kind]
    at = f"{where}.{kind}"
    constraint: Constraint
    if kind == "custom_constraint":
        raise TemplateError(
            at,
            f"custom_constraint {describe_value(body)} is not supported by Convergence "
            "(custom constraints validate against OpenStack services); use "
            "allowed_values or allowed_pattern",
        )
    if kind == "range":
        low, high = _bounds(body, at, ("min", "max"), integral=False)
        if low is None and high is None:
            raise TemplateError(at, "a range needs a min and/or a max")
        constraint = RangeConstraint(description, low, high)
    elif kind == "length":
        low, high = _bounds(body, at, ("min", "max"), integral=True)
        if low is None and high is None:
            raise TemplateError(at, "a length needs a min and/or a max")
        constraint = LengthConstraint(description, low, high)
    elif kind == "modulo":
        if version < _MODULO_SINCE:
            raise TemplateError(
                at, f"the modulo constraint needs heat_template_version {_MODULO_SINCE} or later"
            )
        step, offset = _bounds(body, at, ("step", "offset"), integral=True)
        if step is None or offset is None:
            raise TemplateError(at, "a modulo needs both a step and an offset")
        if step == 0:
            raise TemplateError(at, "step must not be 0")
        if abs(offset) >= abs(step):
            raise TemplateError(at, "offset must be smaller than step (by absolute value)")
        if step * offset < 0:
            raise TemplateError(at, "step and offset must be both positive or both negative")
        constraint = ModuloConstraint(description, int(step), int(offset))
    elif kind == "allowed_values":
        if not isinstance(body, list):
            raise TemplateError(at, f"expected a list of values, got {describe_value(body)}")
        constraint = AllowedValuesConstraint(description, tuple(body), parameter_type)
    else:
        if not isinstance(body, str):
            raise TemplateError(
                at, f"expected a regular expression string, got {describe_value(body)}"
            )
        try:
            compiled = re.compile(body)
        except re.error as error:
            raise TemplateError(at, f"invalid regular expression: {error}") from None
        constraint = AllowedPatternConstraint(description, body, compiled)
    if parameter_type not in constraint.applies_to:
        raise TemplateError(
            at,
            f"a {kind} constraint does not apply to a {parameter_type} parameter "
            f"(it applies to: {', '.join(sorted(constraint.applies_to))})",
        )
    return constraint


# -- schemas -------------------------------------------------------------------------------------


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
            _parse_constraint(item, parameter_type, version, f"{where}.constraints[{index}]")
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
            return _COERCERS[self.type](value)
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


def parse_parameter_schemas(section: Any, version: str) -> dict[str, ParameterSchema]:
    """Parse the `parameters` section (None is an empty section)."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise TemplateError("parameters", f"expected a map, got {describe_value(section)}")
    return {
        name: ParameterSchema.from_template(name, definition, version)
        for name, definition in section.items()
    }


def bind_parameter_values(
    schemas: Mapping[str, ParameterSchema], user_values: Mapping[str, Any]
) -> dict[str, Any]:
    """Every declared parameter's value: the user's (coerced, constrained) or the default.

    A user value of None counts as not given. Raises TemplateError for an undeclared
    name, a missing required value, a value of the wrong type or a constraint violation.
    """
    undeclared = sorted(name for name in user_values if name not in schemas)
    if undeclared:
        pseudo = [name for name in undeclared if name in PSEUDO_PARAMETERS]
        if pseudo:
            raise TemplateError(
                f"parameters.{pseudo[0]}",
                "pseudo parameters come from the stack identity and cannot be given",
            )
        declared = ", ".join(schemas) or "none"
        raise TemplateError(
            f"parameters.{undeclared[0]}",
            f"not declared in the template (declared parameters: {declared})",
        )
    values: dict[str, Any] = {}
    for name, schema in schemas.items():
        given = user_values.get(name)
        if given is None:
            if schema.default is None:
                raise TemplateError(schema.where, "a value is required (no default is declared)")
            values[name] = json_copy(schema.default)
            continue
        value = schema.coerce(given)
        schema.check_constraints(value)
        values[name] = value
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
