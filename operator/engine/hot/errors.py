"""How the template language reports an error: `TemplateError` says where and what,
`describe_value` words the offending value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class TemplateError(ValueError):
    """An invalid template, parameter or function call.

    `where` says where (e.g. "resources.web.properties.image: get_attr"), the
    message says what was expected; str() gives both.
    """

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


def describe_value(value: Any) -> str:
    """A short description of a value for error messages, e.g. 'a list [1, 2]'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        kind = "a string"
    elif isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, Mapping):
        kind = "a map"
    elif isinstance(value, list):
        kind = "a list"
    else:
        kind = f"a {type(value).__name__}"
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{kind} {text}"
