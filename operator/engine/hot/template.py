"""Heat Orchestration Templates (HOT): the parsed, statically validated document.

A `Template` parses every snippet into function objects once (and parsing the
same YAML text again is a cache hit), checks its sections, parameters,
resources and outputs, and keeps them parsed for `definition.StackDefinition`,
which binds them to parameter values. Every error is a `TemplateError`; the
errors of independent parts (each parameter, condition, resource key, output,
function call) are all reported, as `TemplateErrors` when there are several. A
`lenient` Template keeps them in `errors` instead, so that a StackDefinition
can add the errors only binding finds (types, attributes, values) to them.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from convergence.operator.engine.hot.errors import (
    ErrorCollector,
    TemplateError,
    combined,
    describe_value,
)
from convergence.operator.engine.hot.functions.conditions import Outline
from convergence.operator.engine.hot.functions.parser import SnippetParser
from convergence.operator.engine.hot.functions.snippets import Function, TemplateNames
from convergence.operator.engine.hot.loading import json_document, load_document
from convergence.operator.engine.hot.parameters import (
    PSEUDO_PARAMETERS,
    ParameterSchema,
    parse_parameter_schemas,
    validate_parameter_groups,
)

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


@dataclass(frozen=True)
class ParsedResource:
    """One resource of a Template, its snippets parsed but bound to nothing yet."""

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
        """Where the resource is in the template, for errors."""
        return f"resources.{self.name}"


@dataclass(frozen=True)
class ParsedOutput:
    """One output of a Template, its value parsed but bound to nothing yet."""

    name: str
    value: Any
    outline: Outline
    description: str | None
    condition: Any


def _check_keys(where: str, keys: Collection[str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(keys) - set(allowed))
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
    # The parsed sections, by name, for a StackDefinition to bind.
    parsed_conditions: dict[str, Any]
    parsed_resources: dict[str, ParsedResource]
    parsed_outputs: dict[str, ParsedOutput]
    # The errors of a lenient Template (what failed is left out of the parsed sections).
    errors: tuple[TemplateError, ...]

    @classmethod
    def parse(
        cls,
        source: str | Mapping[str, Any],
        *,
        lenient: bool = False,
        files: Mapping[str, str] | None = None,
    ) -> Template:
        """Parse YAML text or a mapping; raise TemplateError (TemplateErrors for several)
        on any static error, or keep them in `errors` when `lenient` (a document that is
        no template at all, e.g. of an unknown version, raises even then). `files` is
        the stack's files map, which `get_file` reads."""
        if isinstance(source, str):
            return _parse_text(source, lenient, tuple(sorted((files or {}).items())))
        if isinstance(source, Mapping):
            return cls(json_document(source, ""), lenient=lenient, files=files)
        raise TemplateError(
            "template", f"expected YAML text or a map, got {describe_value(source)}"
        )

    @classmethod
    def empty(cls) -> Template:
        """The empty template (what a delete converges to)."""
        return cls({"heat_template_version": LATEST_VERSION})

    def __init__(
        self, document: Any, *, lenient: bool = False, files: Mapping[str, str] | None = None
    ) -> None:
        """Validate a JSON document (use `parse`)."""
        if not isinstance(document, dict):
            raise TemplateError(
                "template", f"expected a map of template sections, got {describe_value(document)}"
            )
        self.raw = document
        self.version = _canonical_version(document)
        errors = ErrorCollector()
        sections = _SECTIONS + (("conditions",) if self.version >= _CONDITIONS_SINCE else ())
        for section in document:
            if section not in sections:
                hint = (
                    f" (conditions need heat_template_version {_CONDITIONS_SINCE} or later)"
                    if section == "conditions"
                    else ""
                )
                errors.add(
                    TemplateError(
                        section,
                        f"unknown template section; expected {', '.join(sections)}{hint}",
                    )
                )
        description = document.get("description")
        self.description = description if isinstance(description, str) else None
        if description is not None and not isinstance(description, str):
            errors.add(
                TemplateError(
                    "description", f"expected a string, got {describe_value(description)}"
                )
            )
        raw_parameters = document.get("parameters")
        schemas: dict[str, ParameterSchema] = {}
        with errors.part():
            schemas = parse_parameter_schemas(raw_parameters, self.version, errors)
        self.parameter_schemas = MappingProxyType(schemas)
        declared = list(raw_parameters) if isinstance(raw_parameters, dict) else []
        with errors.part():
            validate_parameter_groups(document.get("parameter_groups"), declared)

        raw_sections: dict[str, dict[str, Any]] = {}
        for section in ("conditions", "resources", "outputs"):
            raw_sections[section] = {}
            with errors.part():
                raw_sections[section] = _section_map(document, section)
        raw_conditions = raw_sections["conditions"]
        raw_resources = raw_sections["resources"]
        raw_outputs = raw_sections["outputs"]
        for name in raw_resources:
            if not name or "/" in name:
                errors.add(
                    TemplateError(
                        f"resources.{name}", "a resource name must be non-empty and without '/'"
                    )
                )
        names = TemplateNames(
            # Every declared name, also of a declaration that failed: its references are not
            # errors of their own.
            parameters=frozenset(declared) | frozenset(PSEUDO_PARAMETERS),
            resources=frozenset(raw_resources),
            conditions=frozenset(raw_conditions),
        )
        parser = SnippetParser(self.version, names, errors, files)
        self.parsed_conditions = {}
        for name, definition in raw_conditions.items():
            with errors.part():
                self.parsed_conditions[name] = parser.parse_condition(
                    definition, f"conditions.{name}"
                )
        self.parsed_resources = {}
        for name, definition in raw_resources.items():
            with errors.part():
                self.parsed_resources[name] = self._parse_resource(parser, name, definition)
        self.parsed_outputs = {}
        for name, definition in raw_outputs.items():
            with errors.part():
                self.parsed_outputs[name] = self._parse_output(parser, name, definition)
        self.errors = tuple(errors.errors)
        if self.errors and not lenient:
            raise combined(self.errors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Template {self.version}: {len(self.parsed_resources)} resources>"

    @property
    def resource_names(self) -> tuple[str, ...]:
        """All resources of the template in order, enabled or not."""
        return tuple(self.parsed_resources)

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

    def _parse_resource(self, parser: SnippetParser, name: str, definition: Any) -> ParsedResource:
        where = f"resources.{name}"
        if not isinstance(definition, dict):
            raise TemplateError(
                where, f"expected a map with a type, got {describe_value(definition)}"
            )
        # Each key is checked apart, so that one resource reports all its mistakes.
        errors = ErrorCollector()
        allowed: tuple[str, ...] = _RESOURCE_KEYS
        keys = set(definition)
        if self.version >= _CONDITIONS_SINCE:
            allowed += ("condition",)
            if "external_id" in definition:
                keys.discard("external_id")  # said here, not again as an unknown key
                errors.add(
                    TemplateError(
                        f"{where}.external_id",
                        "external_id is not supported by Convergence (resources are not adopted)",
                    )
                )
        with errors.part():
            _check_keys(where, keys, allowed)
        resource_type = definition.get("type")
        if not isinstance(resource_type, str) or not resource_type:
            errors.add(
                TemplateError(
                    f"{where}.type",
                    f"expected a resource type name, got {describe_value(resource_type)}",
                )
            )
        description = definition.get("description")
        if description is not None and not isinstance(description, str):
            errors.add(TemplateError(f"{where}.description", "expected a string"))

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
            errors.add(
                TemplateError(
                    f"{where}.depends_on",
                    "expected a resource name or a list of them, got " + describe_value(depends_on),
                )
            )
            depends_on = []
        for required in depends_on:
            if not isinstance(required, str) or required not in parser.names.resources:
                errors.add(
                    TemplateError(
                        f"{where}.depends_on", f"unknown resource {describe_value(required)}"
                    )
                )

        deletion_policy = update_policy = condition = None
        properties: Any = {}
        metadata: Any = {}
        properties_outline: Outline = ()
        metadata_outline: Outline = ()
        with errors.part():
            deletion_policy = parsed_policy("deletion_policy")
            if not isinstance(deletion_policy, Function):
                self.deletion_policy(deletion_policy, f"{where}.deletion_policy")
        with errors.part():
            update_policy = parsed_policy("update_policy")
            if not isinstance(update_policy, (dict, Function, type(None))):
                raise TemplateError(
                    f"{where}.update_policy",
                    f"expected a map, got {describe_value(update_policy)}",
                )
        with errors.part():
            properties, properties_outline = parsed_map("properties")
        with errors.part():
            metadata, metadata_outline = parsed_map("metadata")
        with errors.part():
            condition = self._parse_condition_key(parser, definition, f"{where}.condition")
        errors.check()
        assert isinstance(resource_type, str)
        return ParsedResource(
            name=name,
            type=resource_type,
            properties=properties,
            metadata=metadata,
            outline=properties_outline + metadata_outline,
            depends_on=tuple(dict.fromkeys(depends_on)),
            deletion_policy=deletion_policy,
            update_policy=update_policy,
            condition=condition,
        )

    def deletion_policy(self, value: Any, where: str) -> str:
        """A deletion policy value normalised to "Delete" or "Retain" for this template's version
        (lowercase from 2016-10-14); a TemplateError at `where` for anything else."""
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

    def _parse_output(self, parser: SnippetParser, name: str, definition: Any) -> ParsedOutput:
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
        return ParsedOutput(
            name=name,
            value=value,
            outline=outline,
            description=description,
            condition=self._parse_condition_key(parser, definition, f"{where}.condition"),
        )


@functools.lru_cache(maxsize=8)
def _parse_text(text: str, lenient: bool, files: tuple[tuple[str, str], ...]) -> Template:
    # Worker steps parse the same stored template again and again.
    return Template(json_document(load_document(text), ""), lenient=lenient, files=dict(files))
