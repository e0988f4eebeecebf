"""Coercing a user's value to one of HOT's parameter types, as Heat does.

Values reach a stack from the user (the Stack's `spec.parameters`, often strings
read from a ConfigMap): `"3"` is a number, `"yes"` a boolean, `"a,b"` a
comma_delimited_list, a JSON string a json value. OS::Heat::Value coerces its
value the same way (through the plugin API's `coerce_value`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from convergence.operator.engine.hot.errors import describe_value
from convergence.operator.engine.hot.functions.snippets import json_copy

PARAMETER_TYPES = ("string", "number", "boolean", "json", "comma_delimited_list")

# What oslo's strutils.bool_from_string accepts in strict mode (Heat's rule).
_TRUE_STRINGS = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE_STRINGS = frozenset({"0", "f", "false", "off", "n", "no"})


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


def coerce_value(parameter_type: str, value: Any) -> Any:
    """`value` coerced to one of PARAMETER_TYPES as Heat coerces a parameter value (no
    constraints checked); ParameterValueError says what was expected."""
    return _COERCERS[parameter_type](value)
