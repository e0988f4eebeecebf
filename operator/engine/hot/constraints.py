"""The constraints a template may put on a parameter: range, length, modulo, allowed_values,
allowed_pattern (custom_constraint validates against OpenStack services and is refused)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from convergence.operator.engine.hot.coercion import (
    ParameterValueError,
    as_boolean,
    as_number,
    as_string,
)
from convergence.operator.engine.hot.errors import TemplateError, describe_value

_MODULO_SINCE = "2017-02-24"


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


def parse_constraint(definition: Any, parameter_type: str, version: str, where: str) -> Constraint:
    """One entry of a parameter's `constraints` list, checked against the parameter's type."""
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
