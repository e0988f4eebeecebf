"""Reading a template document: YAML or JSON text to a JSON value, as Heat reads it.

Timestamps stay strings (`heat_template_version: 2021-04-16` is not a date), keys
must be strings, and anything JSON cannot hold is a TemplateError at its path.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from typing import Any

import yaml

from convergence.operator.engine.hot.errors import TemplateError, describe_value


class _TemplateLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """The loader of yaml.safe_load (libyaml's when built in), except that timestamps stay
    strings, as in Heat: `heat_template_version: 2021-04-16` must not become a date."""


_TemplateLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)


def json_document(value: Any, path: str) -> Any:
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
            document[key] = json_document(item, f"{path}.{key}" if path else key)
        return document
    if isinstance(value, (list, tuple)):
        return [json_document(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TemplateError(path or "template", f"{value!r} is not a JSON value")


def load_document(text: str) -> Any:
    """The value of YAML or JSON text; a TemplateError if it is neither."""
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
