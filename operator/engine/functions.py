"""HOT intrinsic functions (`get_attr`, `str_replace`, `if`, ...) in three phases.

A snippet of a template is walked once per phase, never more:

1. **parse** (once per Template, parameter-independent): every single-key map
   naming a function of the template's version becomes a `Function` object
   holding its parsed arguments; argument shapes and literal names of
   parameters, resources and conditions are checked here.
2. **bind** (per StackDefinition, each snippet on first use): parameters and
   conditions are known, so `get_param` and the condition functions are
   evaluated, `if` keeps only its chosen branch (or removes the enclosing item),
   and every function whose arguments are then constant is evaluated. What is
   left are functions that need the data of other resources: `get_resource`,
   `get_attr` and the functions around them. Dependencies need less: parsing
   records each snippet's *outline* (its references and `if` calls), which
   gives them without binding the snippet.
3. **resolve** (per worker step): those are evaluated against the reference ids
   and attributes that the required resources pushed through the sync points.

Every error is a `TemplateError` whose `where` names the path and the function,
e.g. ``resources.web.properties.image: get_attr``.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib import parse as urlparse


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


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def json_dumps(value: Any) -> str:
    """How HOT functions serialise maps and lists into strings (sorted keys, like Heat)."""
    return json.dumps(value, sort_keys=True)


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (maps and lists rebuilt, scalars shared)."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


class _Removed:
    """What a two-argument `if` with a false condition leaves: nothing at all."""

    _instance: ClassVar[_Removed | None] = None

    def __new__(cls) -> _Removed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REMOVED"


# The enclosing list item, map entry or property disappears when a value binds to this.
REMOVED = _Removed()


class BindingScope(Protocol):
    """What binding needs from a stack definition: parameters, conditions, enabled resources."""

    def parameter(self, name: str, where: str) -> Any:
        """The value of a parameter (pseudo parameters included)."""
        ...

    def condition(self, name: str, where: str) -> bool:
        """The value of a named condition of the `conditions` section."""
        ...

    def check_reference(self, resource: str, where: str) -> None:
        """Raise TemplateError unless `resource` is an enabled resource."""
        ...


class ResourceOutputs(Protocol):
    """The data a required resource pushed to its dependents (ResourceData in template.py)."""

    @property
    def reference_id(self) -> str | None:
        """What get_resource gives."""
        ...

    @property
    def attributes(self) -> Mapping[str, Any]:
        """What get_attr selects from, by top-level attribute name."""
        ...


@dataclass(frozen=True)
class TemplateNames:
    """The names a template declares, for checking literal references while parsing."""

    parameters: frozenset[str]
    resources: frozenset[str]
    conditions: frozenset[str]


# -- the walks over snippets ---------------------------------------------------------------------


def bind_snippet(snippet: Any, scope: BindingScope) -> tuple[Any, bool]:
    """Bind a parsed snippet: (value, whether functions that need resource data remain).

    A map entry or list item that binds to REMOVED is dropped; the snippet as a
    whole may bind to REMOVED (the caller decides what that means).
    """
    if isinstance(snippet, Function):
        return snippet.bind(scope)
    if isinstance(snippet, dict):
        bound_map: dict[str, Any] = {}
        dynamic = False
        for key, item in snippet.items():
            value, item_dynamic = bind_snippet(item, scope)
            if value is not REMOVED:
                bound_map[key] = value
                dynamic = dynamic or item_dynamic
        return bound_map, dynamic
    if isinstance(snippet, list):
        bound_list: list[Any] = []
        dynamic = False
        for item in snippet:
            value, item_dynamic = bind_snippet(item, scope)
            if value is not REMOVED:
                bound_list.append(value)
                dynamic = dynamic or item_dynamic
        return bound_list, dynamic
    return snippet, False


def resolve_snippet(snippet: Any, data: Mapping[str, ResourceOutputs]) -> Any:
    """Evaluate a bound snippet against resource data; returns a fresh JSON value."""
    if isinstance(snippet, Function):
        return snippet.resolve(data)
    if isinstance(snippet, dict):
        return {key: resolve_snippet(item, data) for key, item in snippet.items()}
    if isinstance(snippet, list):
        return [resolve_snippet(item, data) for item in snippet]
    return snippet


def render_snippet(snippet: Any) -> Any:
    """The JSON form of a (parsed or bound) snippet: each function as `{name: args}`."""
    if isinstance(snippet, Function):
        return {snippet.name: render_snippet(snippet.args)}
    if isinstance(snippet, dict):
        return {key: render_snippet(item) for key, item in snippet.items()}
    if isinstance(snippet, list):
        return [render_snippet(item) for item in snippet]
    return snippet


def condition_value(value: Any, scope: BindingScope, where: str) -> bool:
    """A bound condition: a boolean, or the name of a condition of the `conditions` section."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return scope.condition(value, where)
    raise TemplateError(
        where,
        "expected a condition name, a boolean or a condition function "
        f"(equals, not, and, or, contains), got {describe_value(value)}",
    )


# -- the function base ---------------------------------------------------------------------------


class Function:
    """A parsed `{name: args}` call; `args` is itself a parsed snippet.

    Subclasses check their literal arguments in `check_arguments` and compute
    their result from fully resolved arguments in `evaluate`.
    """

    # The version that introduced the function (dated heat_template_version).
    since: ClassVar[str] = "2013-05-23"

    def __init__(self, name: str, args: Any, path: str, version: str) -> None:
        self.name = name
        self.args = args
        self.path = path
        self.version = version

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}>"

    @property
    def where(self) -> str:
        """Where this call is in the template, for errors."""
        return f"{self.path}: {self.name}"

    def fail(self, message: str) -> TemplateError:
        """An error about this call."""
        return TemplateError(self.where, message)

    @classmethod
    def from_snippet(
        cls, parser: SnippetParser, name: str, raw_args: Any, path: str, in_condition: bool
    ) -> Function:
        """Parse `{name: raw_args}` found at `path` and check it."""
        args = parser.parse_in_context(raw_args, f"{path}.{name}", in_condition)
        function = cls(name, args, path, parser.version)
        function.check_arguments()
        function.check_names(parser.names)
        return function

    def check_arguments(self) -> None:
        """Check the shape of the literal arguments (functions among them are checked later)."""

    def check_names(self, names: TemplateNames) -> None:
        """Check literal names of parameters, resources or conditions."""

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        """Evaluate now if the bound arguments are constant, else keep a bound copy."""
        args, dynamic = bind_snippet(self.args, scope)
        if args is REMOVED:
            args = None
        if dynamic:
            return self.rebound(args), True
        return self.evaluate_checked(args), False

    def resolve(self, data: Mapping[str, ResourceOutputs]) -> Any:
        """Evaluate a bound call against the data of the resources it refers to."""
        return self.evaluate_checked(resolve_snippet(self.args, data))

    def evaluate(self, args: Any) -> Any:
        """The result from fully resolved arguments."""
        raise self.fail("cannot be evaluated here")

    def evaluate_checked(self, args: Any) -> Any:
        """`evaluate`, with any unexpected Python error turned into a TemplateError."""
        try:
            return self.evaluate(args)
        except TemplateError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            raise self.fail(f"invalid arguments: {error}") from None

    def rebound(self, args: Any) -> Function:
        """A copy of this call holding bound arguments."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.args = args
        return clone

    def expect_list(self, args: Any, form: str, *, lengths: Iterable[int] | None = None) -> None:
        """Check literal list arguments (a function in their place is checked when resolved)."""
        if isinstance(args, Function):
            return
        if not isinstance(args, list):
            raise self.fail(f"expected arguments of the form {form}, got {describe_value(args)}")
        allowed = list(lengths) if lengths is not None else None
        if allowed is not None and len(args) not in allowed:
            raise self.fail(f"expected arguments of the form {form}, got {len(args)} argument(s)")


def _version_at_least(version: str, since: str) -> bool:
    return version >= since


# -- parameters and resources --------------------------------------------------------------------


class GetParam(Function):
    """`get_param: name` or `get_param: [name, key_or_index, ...]`: a parameter value.

    A path that does not exist gives "" (as in Heat).
    """

    FORM = "name or [name, key/index, ...]"

    def _literal_name(self) -> str | None:
        if isinstance(self.args, str):
            return self.args
        if isinstance(self.args, list) and self.args and isinstance(self.args[0], str):
            return self.args[0]
        return None

    def check_arguments(self) -> None:
        if isinstance(self.args, Function):
            return
        if isinstance(self.args, list):
            if not self.args:
                raise self.fail(f"expected a parameter {self.FORM}, got an empty list")
            if not isinstance(self.args[0], (str, Function)):
                raise self.fail(
                    f"the parameter name must be a string, got {describe_value(self.args[0])}"
                )
        elif not isinstance(self.args, str) or not self.args:
            raise self.fail(f"expected a parameter {self.FORM}, got {describe_value(self.args)}")

    def check_names(self, names: TemplateNames) -> None:
        name = self._literal_name()
        if name is not None and name not in names.parameters:
            raise self.fail(f"unknown parameter {name!r}" + _did_you_mean(name, names.parameters))

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        args, dynamic = bind_snippet(self.args, scope)
        if dynamic:
            raise self.fail("the parameter name and path must not depend on resources")
        if isinstance(args, str):
            name, path = args, []
        elif isinstance(args, list) and args and isinstance(args[0], str):
            name, path = args[0], args[1:]
        else:
            raise self.fail(f"expected a parameter {self.FORM}, got {describe_value(args)}")
        return select_parameter_path(scope.parameter(name, self.where), path), False


def select_parameter_path(value: Any, path: list[Any]) -> Any:
    """Follow keys and indices (digit strings index lists) into a parameter value; "" if absent."""
    for key in path:
        if isinstance(value, Mapping):
            if not isinstance(key, str) or key not in value:
                return ""
            value = value[key]
        elif isinstance(value, (list, str)):
            try:
                index = int(key)
                value = value[index]
            except (TypeError, ValueError, IndexError):
                return ""
        else:
            return ""
    return value


def select_attribute_path(value: Any, path: list[Any]) -> Any:
    """Follow map keys and list indices into an attribute value; None if absent (as in Heat)."""
    for key in path:
        indexable = isinstance(value, (list, str)) and isinstance(key, int)
        if not (isinstance(value, Mapping) or indexable):
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


class ResourceReference(Function):
    """A call that needs the data of another resource: get_resource and get_attr."""

    @property
    def resource_name(self) -> str:
        """The referenced resource (bound or literal calls only)."""
        name = self.args[0] if isinstance(self.args, list) else self.args
        assert isinstance(name, str)
        return name

    def is_literal(self) -> bool:
        """Whether the resource (and attribute) names are written out, needing no binding."""
        raise NotImplementedError

    def bound_reference(self, scope: BindingScope) -> ResourceReference:
        """This call with its names bound (itself when they are literal); checks that the
        resource is enabled. Enough for dependencies, not for resolution."""
        if self.is_literal():
            scope.check_reference(self.resource_name, self.where)
            return self
        bound, _ = self.bind(scope)
        assert isinstance(bound, ResourceReference)
        return bound

    def _check_literal_resource(self, name: Any, names: TemplateNames) -> None:
        if isinstance(name, str) and name not in names.resources:
            raise self.fail(f"unknown resource {name!r}" + _did_you_mean(name, names.resources))

    def _bound_resource(self, name: Any, scope: BindingScope) -> str:
        if isinstance(name, Function):
            raise self.fail("the resource name must not depend on other resources")
        if not isinstance(name, str):
            raise self.fail(f"the resource name must be a string, got {describe_value(name)}")
        scope.check_reference(name, self.where)
        return name

    def outputs(self, data: Mapping[str, ResourceOutputs]) -> ResourceOutputs:
        """The data of the referenced resource (an error if it has not arrived)."""
        name = self.resource_name
        try:
            return data[name]
        except KeyError:
            raise self.fail(
                f"no data for resource {name!r}: it must be complete before this is resolved"
            ) from None


class GetResource(ResourceReference):
    """`get_resource: name`: the reference id of a resource (also CFN `Ref` to a resource)."""

    def check_arguments(self) -> None:
        if not isinstance(self.args, (str, Function)) or not self.args:
            raise self.fail(f"expected a resource name, got {describe_value(self.args)}")

    def check_names(self, names: TemplateNames) -> None:
        self._check_literal_resource(self.args, names)

    def is_literal(self) -> bool:
        return isinstance(self.args, str)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        name, _ = bind_snippet(self.args, scope)
        return self.rebound(self._bound_resource(name, scope)), True

    def resolve(self, data: Mapping[str, ResourceOutputs]) -> Any:
        return self.outputs(data).reference_id


class GetAttr(ResourceReference):
    """`get_attr: [resource, attribute, path...]`; `[resource]` alone gives all attributes
    as a map (2015-10-15 and later). A path element that does not exist gives None."""

    def _form(self) -> str:
        if _version_at_least(self.version, "2015-10-15"):
            return "[resource_name] or [resource_name, attribute_name, (path...)]"
        return "[resource_name, attribute_name, (path...)]"

    def check_arguments(self) -> None:
        minimum = 1 if _version_at_least(self.version, "2015-10-15") else 2
        if not isinstance(self.args, list) or len(self.args) < minimum:
            raise self.fail(f"expected {self._form()}, got {describe_value(self.args)}")
        for position, label in ((0, "resource name"), (1, "attribute name")):
            if len(self.args) > position and not isinstance(self.args[position], (str, Function)):
                raise self.fail(
                    f"the {label} must be a string, got {describe_value(self.args[position])}"
                )

    def check_names(self, names: TemplateNames) -> None:
        self._check_literal_resource(self.args[0], names)

    def is_literal(self) -> bool:
        return isinstance(self.args[0], str) and (
            len(self.args) < 2 or isinstance(self.args[1], str)
        )

    @property
    def attribute_name(self) -> str | None:
        """The top-level attribute (None for all attributes; bound or literal calls only)."""
        if len(self.args) < 2:
            return None
        attribute = self.args[1]
        assert isinstance(attribute, str)
        return attribute

    @property
    def attribute_path(self) -> list[Any]:
        """The path below the attribute (may still hold functions; bound calls only)."""
        return list(self.args[2:])

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        args, _ = bind_snippet(self.args, scope)
        if not isinstance(args, list) or not args:
            raise self.fail(f"expected {self._form()}, got {describe_value(args)}")
        minimum = 1 if _version_at_least(self.version, "2015-10-15") else 2
        if len(args) < minimum:
            raise self.fail(f"expected {self._form()}, got {describe_value(render_snippet(args))}")
        resource = self._bound_resource(args[0], scope)
        if len(args) > 1:
            if isinstance(args[1], Function):
                raise self.fail("the attribute name must not depend on other resources")
            if not isinstance(args[1], str):
                raise self.fail(
                    f"the attribute name must be a string, got {describe_value(args[1])}"
                )
        return self.rebound([resource, *args[1:]]), True

    def resolve(self, data: Mapping[str, ResourceOutputs]) -> Any:
        attributes = self.outputs(data).attributes
        attribute = self.attribute_name
        if attribute is None:
            return json_copy(dict(attributes))
        path = resolve_snippet(self.attribute_path, data)
        return json_copy(select_attribute_path(attributes.get(attribute), path))


class Ref(Function):
    """CFN `Ref: name` (heat_template_version 2013-05-23 only): a resource or a parameter."""

    @classmethod
    def create(cls, parser: SnippetParser, name: str, raw_args: Any, path: str) -> Function:
        """A get_resource for a resource name, else a get_param."""
        if not isinstance(raw_args, str) or not raw_args:
            raise TemplateError(
                f"{path}: {name}",
                f"expected a resource or parameter name, got {describe_value(raw_args)}",
            )
        target: type[Function] = GetResource if raw_args in parser.names.resources else GetParam
        return target.from_snippet(parser, name, raw_args, path, False)


# -- strings and lists ---------------------------------------------------------------------------


class ListJoin(Function):
    """`list_join: [delimiter, list, ...]`: join strings; several lists and JSON-serialised
    maps/lists as items from 2015-10-15 (also CFN `Fn::Join`, one list of strings)."""

    def _several_lists(self) -> bool:
        return self.name == "list_join" and _version_at_least(self.version, "2015-10-15")

    def _form(self) -> str:
        if self._several_lists():
            return "[delimiter, [string, ...], ...]"
        return "[delimiter, [string, ...]]"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list):
            raise self.fail(f"expected {self._form()}, got {describe_value(self.args)}")
        if len(self.args) < 2 or (not self._several_lists() and len(self.args) != 2):
            raise self.fail(f"expected {self._form()}, got {len(self.args)} argument(s)")

    def evaluate(self, args: Any) -> Any:
        delimiter = args[0]
        if not isinstance(delimiter, str):
            raise self.fail(f"the delimiter must be a string, got {describe_value(delimiter)}")
        strings: list[str] = []
        for items in args[1:]:
            if items is None:
                continue
            if not isinstance(items, list):
                raise self.fail(f"expected lists to join, got {describe_value(items)}")
            strings.extend(self._as_string(item) for item in items)
        return delimiter.join(strings)

    def _as_string(self, item: Any) -> str:
        if item is None:
            return ""
        if isinstance(item, str):
            return item
        if self._several_lists() and isinstance(item, (dict, list)):
            return json_dumps(item)
        expected = "strings, maps or lists" if self._several_lists() else "strings"
        raise self.fail(f"items to join must be {expected}, got {describe_value(item)}")


class StrReplace(Function):
    """`str_replace: {template, params}`: substitute each param key by its value, longest
    keys first. From 2015-10-15 map/list values are JSON-serialised. `str_replace_strict`
    also requires every key to occur; `str_replace_vstrict` also rejects empty values."""

    strict: ClassVar[bool] = False
    allow_empty: ClassVar[bool] = True

    def _template_and_params(self, args: Any) -> tuple[Any, Any]:
        return args["template"], args["params"]

    def check_arguments(self) -> None:
        if not isinstance(self.args, dict) or set(self.args) != {"template", "params"}:
            raise self.fail(
                "expected a map {template: <string>, params: {<key>: <value>, ...}}, got "
                + describe_value(render_snippet(self.args))
            )
        params = self.args["params"]
        if not isinstance(params, (dict, Function)):
            raise self.fail(f"params must be a map, got {describe_value(params)}")

    def evaluate(self, args: Any) -> Any:
        template, params = self._template_and_params(args)
        if not isinstance(template, str):
            raise self.fail(f"the template must be a string, got {describe_value(template)}")
        if not isinstance(params, Mapping):
            raise self.fail(f"params must be a map, got {describe_value(params)}")
        replacements = [
            (key, self._replacement(key, params[key]))
            for key in sorted(sorted(params), key=len, reverse=True)
        ]
        if any(key == "" for key, _ in replacements):
            raise self.fail("a param key must not be empty")
        found: set[str] = set()
        result = _substitute(template, replacements, found)
        missing = [key for key, _ in replacements if key not in found]
        if self.strict and missing:
            raise self.fail(f"these params were not found in the template: {', '.join(missing)}")
        return result

    def _replacement(self, key: str, value: Any) -> str:
        if value is None or value == "" or value == [] or value == {}:
            if not self.allow_empty:
                raise self.fail(f"param {key!r} has an empty value; a non-empty value is required")
            if value is None:
                return ""
        if isinstance(value, (str, int, float, bool)):
            return str(value)
        if isinstance(value, (dict, list)) and _version_at_least(self.version, "2015-10-15"):
            return json_dumps(value)
        expected = (
            "strings, numbers, maps or lists"
            if _version_at_least(self.version, "2015-10-15")
            else "strings or numbers"
        )
        raise self.fail(f"param {key!r} must be one of {expected}, got {describe_value(value)}")


def _substitute(text: str, replacements: list[tuple[str, str]], found: set[str]) -> str:
    # The first (longest) key splits the text; shorter keys are substituted in the
    # pieces only, and values are joined in last, so a value is never searched again.
    if not replacements:
        return text
    (key, value), rest = replacements[0], replacements[1:]
    pieces = text.split(key)
    if len(pieces) > 1:
        found.add(key)
    return value.join(_substitute(piece, rest, found) for piece in pieces)


class StrReplaceStrict(StrReplace):
    """`str_replace_strict`: str_replace that fails when a param key is not in the template."""

    since = "2017-02-24"
    strict = True


class StrReplaceVeryStrict(StrReplace):
    """`str_replace_vstrict`: str_replace_strict that also fails on a null or empty value."""

    since = "2017-09-01"
    strict = True
    allow_empty = False


class CfnReplace(StrReplace):
    """CFN `Fn::Replace: [{key: value, ...}, template]` (2013-05-23 only)."""

    def _template_and_params(self, args: Any) -> tuple[Any, Any]:
        return args[1], args[0]

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[{key: value, ...}, template]", lengths=[2])


class StrSplit(Function):
    """`str_split: [delimiter, string, (index)]`: a list of parts, or the part at index."""

    since = "2015-10-15"
    FORM = "[delimiter, string] or [delimiter, string, index]"

    def check_arguments(self) -> None:
        self.expect_list(self.args, self.FORM, lengths=[2, 3])

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) not in (2, 3):
            raise self.fail(f"expected {self.FORM}, got {describe_value(args)}")
        delimiter, text = args[0], args[1]
        if not isinstance(delimiter, str) or not delimiter:
            raise self.fail(
                f"the delimiter must be a non-empty string, got {describe_value(delimiter)}"
            )
        if text is None:
            return None
        if not isinstance(text, str):
            raise self.fail(f"expected a string to split, got {describe_value(text)}")
        parts = text.split(delimiter)
        if len(args) == 2:
            return parts
        try:
            index = int(args[2])
        except (TypeError, ValueError):
            raise self.fail(
                f"the index must be an integer, got {describe_value(args[2])}"
            ) from None
        if not -len(parts) <= index < len(parts):
            raise self.fail(f"index {index} is out of range: expected 0 to {len(parts) - 1}")
        return parts[index]


class CfnSplit(Function):
    """CFN `Fn::Split: [delimiter, string]` (2013-05-23 only)."""

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[delimiter, string]", lengths=[2])

    def evaluate(self, args: Any) -> Any:
        delimiter, text = args
        if not isinstance(delimiter, str) or not delimiter:
            raise self.fail("the delimiter must be a non-empty string")
        if not isinstance(text, str):
            raise self.fail(f"expected a string to split, got {describe_value(text)}")
        return text.split(delimiter)


class CfnSelect(Function):
    """CFN `Fn::Select: [index, list_or_map]` (until 2015-04-30): the item, or "" if absent."""

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[index, list or map]", lengths=[2])

    def evaluate(self, args: Any) -> Any:
        index, collection = args
        if collection is None or collection == "":
            return ""
        if isinstance(collection, str):
            try:
                collection = json.loads(collection)
            except ValueError as error:
                raise self.fail(f"expected a list or map (or its JSON), got: {error}") from None
        if isinstance(collection, Mapping):
            if not isinstance(index, str):
                raise self.fail(
                    f"the index into a map must be a string, got {describe_value(index)}"
                )
            return collection.get(index, "")
        if isinstance(collection, list):
            try:
                position = int(index)
            except (TypeError, ValueError):
                raise self.fail(
                    f"the index must be an integer, got {describe_value(index)}"
                ) from None
            return collection[position] if -len(collection) <= position < len(collection) else ""
        raise self.fail(f"expected a list or map, got {describe_value(collection)}")


class CfnBase64(Function):
    """CFN `Fn::Base64: string` (2013-05-23 only): the string itself, as in Heat."""

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, str):
            raise self.fail(f"expected a string, got {describe_value(args)}")
        return args


class Digest(Function):
    """`digest: [algorithm, value]`: the hex digest (md5, sha1, sha256, sha512, ...)."""

    since = "2015-04-30"

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[algorithm, value]", lengths=[2])

    def evaluate(self, args: Any) -> Any:
        if not (
            isinstance(args, list) and len(args) == 2 and all(isinstance(a, str) for a in args)
        ):
            raise self.fail(
                f"expected [algorithm, value] as two strings, got {describe_value(args)}"
            )
        algorithm, value = args
        algorithms = sorted(
            name for name in hashlib.algorithms_available if not name.startswith("shake")
        )
        if algorithm.lower() not in algorithms:
            raise self.fail(
                f"unknown algorithm {algorithm!r}; expected one of {', '.join(algorithms)}"
            )
        digest = hashlib.new(algorithm.lower())
        try:
            digest.update(value.encode("latin-1"))  # Heat's encoding
        except UnicodeEncodeError:
            digest.update(value.encode("utf-8"))
        return digest.hexdigest()


class Repeat(Function):
    """`repeat: {for_each: {var: list}, template: ...}`: one copy of the template per item,
    with `var` replaced in every string. Maps (their keys) from 2016-10-14; from
    2017-09-01 `permutations: false` pairs the lists item by item instead of taking
    every combination."""

    since = "2015-04-30"

    def _keys(self) -> set[str]:
        keys = {"for_each", "template"}
        if _version_at_least(self.version, "2017-09-01"):
            keys.add("permutations")
        return keys

    def check_arguments(self) -> None:
        form = "{for_each: {<var>: <list>}, template: <template>}"
        if not isinstance(self.args, dict) or not {"for_each", "template"} <= set(self.args):
            raise self.fail(f"expected {form}, got {describe_value(render_snippet(self.args))}")
        unknown = sorted(set(self.args) - self._keys())
        if unknown:
            hint = (
                " (permutations needs heat_template_version 2017-09-01 or later)"
                if "permutations" in unknown
                else ""
            )
            raise self.fail(f"unknown key(s) {', '.join(unknown)}; expected {form}{hint}")
        for_each = self.args["for_each"]
        if not isinstance(for_each, (dict, Function)):
            raise self.fail(f"for_each must be a map of variables, got {describe_value(for_each)}")
        if not isinstance(self.args.get("permutations", True), bool):
            raise self.fail("permutations must be true or false")

    def evaluate(self, args: Any) -> Any:
        for_each = args["for_each"]
        permutations = args.get("permutations", True)
        if not isinstance(for_each, Mapping) or not for_each:
            raise self.fail(f"for_each must be a non-empty map, got {describe_value(for_each)}")
        maps_allowed = permutations and _version_at_least(self.version, "2016-10-14")
        variables = list(for_each)
        value_lists: list[list[Any]] = []
        for variable in variables:
            values = for_each[variable]
            if values is None:
                values = []
            elif isinstance(values, Mapping) and maps_allowed:
                values = list(values)
            elif not isinstance(values, list):
                expected = "a list or a map" if maps_allowed else "a list"
                raise self.fail(
                    f"the values of for_each variable {variable!r} must be {expected}, got "
                    f"{describe_value(values)}"
                )
            value_lists.append([self._as_text(variable, value) for value in values])
        if permutations:
            combinations: Iterable[tuple[str, ...]] = itertools.product(*value_lists)
        else:
            if len({len(values) for values in value_lists}) > 1:
                raise self.fail(
                    "with permutations: false, every for_each list must have the same length"
                )
            combinations = zip(*value_lists, strict=True)
        template = args["template"]
        return [
            _replace_variables(template, list(zip(variables, combination, strict=True)))
            for combination in combinations
        ]

    def _as_text(self, variable: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise self.fail(
            f"the values of for_each variable {variable!r} must be strings or numbers, got "
            f"{describe_value(value)}"
        )


def _replace_variables(template: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(template, str):
        for variable, value in pairs:
            template = template.replace(variable, value)
        return template
    if isinstance(template, list):
        return [_replace_variables(item, pairs) for item in template]
    if isinstance(template, dict):
        return {
            _replace_variables(key, pairs): _replace_variables(value, pairs)
            for key, value in template.items()
        }
    return template


# -- maps and lists ------------------------------------------------------------------------------


class MapMerge(Function):
    """`map_merge: [map, ...]`: one map; later maps win (null counts as an empty map)."""

    since = "2016-04-08"

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[{...}, {...}, ...]")

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, list):
            raise self.fail(f"expected a list of maps, got {describe_value(args)}")
        merged: dict[str, Any] = {}
        for item in args:
            if item is None:
                continue
            if not isinstance(item, Mapping):
                raise self.fail(f"items to merge must be maps, got {describe_value(item)}")
            merged.update(item)
        return merged


class MapReplace(Function):
    """`map_replace: [map, {keys: {old: new}, values: {old: new}}]`: rename keys and values."""

    since = "2016-10-14"
    FORM = "[{...}, {keys: {old: new}, values: {old: new}}]"

    def check_arguments(self) -> None:
        self.expect_list(self.args, self.FORM, lengths=[2])
        if isinstance(self.args, list) and isinstance(self.args[1], dict):
            unknown = sorted(set(self.args[1]) - {"keys", "values"})
            if unknown:
                raise self.fail(f"unknown key(s) {', '.join(unknown)}; expected {self.FORM}")

    def _map(self, value: Any, what: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(
                f"{what} must be a map, got {describe_value(value)}; expected {self.FORM}"
            )
        return value

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) != 2:
            raise self.fail(f"expected {self.FORM}, got {describe_value(args)}")
        source = self._map(args[0], "the first argument")
        replacements = self._map(args[1], "the second argument")
        unknown = sorted(set(replacements) - {"keys", "values"})
        if unknown:
            raise self.fail(f"unknown key(s) {', '.join(unknown)}; expected {self.FORM}")
        new_keys = self._map(replacements.get("keys"), "keys")
        new_values = self._map(replacements.get("values"), "values")
        result: dict[str, Any] = {}
        for key, value in source.items():
            new_key = new_keys.get(key)
            if new_key is None:
                new_key = key
            elif new_key in source and new_key != key:
                raise self.fail(f"key replacement {new_key!r} collides with a key in the input map")
            elif new_key in result:
                raise self.fail(
                    f"key replacement {new_key!r} collides with a key in the output map"
                )
            if isinstance(value, str) and value in new_values:
                value = new_values[value]
            result[new_key] = value
        return result


class ListConcat(Function):
    """`list_concat: [list, ...]`: one list (null counts as an empty list)."""

    since = "2017-09-01"
    unique: ClassVar[bool] = False

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[[...], [...], ...]")

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, list):
            raise self.fail(f"expected a list of lists, got {describe_value(args)}")
        result: list[Any] = []
        for item in args:
            if item is None:
                continue
            if not isinstance(item, list):
                raise self.fail(f"items to concatenate must be lists, got {describe_value(item)}")
            result.extend(item)
        if not self.unique:
            return result
        unique: list[Any] = []
        for value in result:
            if value not in unique:
                unique.append(value)
        return unique


class ListConcatUnique(ListConcat):
    """`list_concat_unique`: list_concat keeping the first of equal items."""

    unique = True


class Filter(Function):
    """`filter: [values_to_remove, list]`: the list without those values."""

    since = "2017-02-24"

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[values_to_remove, list]", lengths=[2])

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) != 2:
            raise self.fail(f"expected [values_to_remove, list], got {describe_value(args)}")
        remove, sequence = args
        if not sequence:
            return sequence
        if not isinstance(sequence, list):
            raise self.fail(f"expected a list to filter, got {describe_value(sequence)}")
        if not remove:
            return sequence
        if not isinstance(remove, list):
            raise self.fail(f"the values to remove must be a list, got {describe_value(remove)}")
        return [item for item in sequence if item not in remove]


class Contains(Function):
    """`contains: [value, sequence]`: whether the value is in the list (or substring)."""

    since = "2017-09-01"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list) or len(self.args) != 2:
            raise self.fail(
                "expected [value, [value1, value2, ...]], got "
                + describe_value(render_snippet(self.args))
            )

    def evaluate(self, args: Any) -> Any:
        value, sequence = args
        if isinstance(sequence, str):
            if not isinstance(value, str):
                raise self.fail(f"only a string can be in a string, got {describe_value(value)}")
            return value in sequence
        if not isinstance(sequence, list):
            raise self.fail(f"the second argument must be a list, got {describe_value(sequence)}")
        return value in sequence


class MakeUrl(Function):
    """`make_url: {scheme, username, password, host, port, path, query, fragment}`:
    a correctly escaped URL."""

    since = "2017-09-01"
    KEYS = ("scheme", "username", "password", "host", "port", "path", "query", "fragment")

    def check_arguments(self) -> None:
        if not isinstance(self.args, dict):
            raise self.fail(
                f"expected a map with keys among {', '.join(self.KEYS)}, got "
                + describe_value(render_snippet(self.args))
            )
        unknown = sorted(set(self.args) - set(self.KEYS))
        if unknown:
            raise self.fail(f"unknown key(s) {', '.join(unknown)}; expected {', '.join(self.KEYS)}")
        self._check_parts(self.args)

    def _check_parts(self, args: Mapping[str, Any]) -> None:
        for key, value in args.items():
            if isinstance(value, Function):
                continue
            if key == "query":
                if not isinstance(value, Mapping):
                    raise self.fail(f"query must be a map, got {describe_value(value)}")
            elif key == "port":
                self._port(value)
            elif not isinstance(value, str):
                raise self.fail(f"{key} must be a string, got {describe_value(value)}")

    def _port(self, value: Any) -> int:
        try:
            port = int(value)
        except (TypeError, ValueError):
            raise self.fail(f"invalid port {describe_value(value)}") from None
        if isinstance(value, bool) or not 0 < port <= 65535:
            raise self.fail(f"invalid port {describe_value(value)}: expected 1-65535")
        return port

    def evaluate(self, args: Any) -> Any:
        if not isinstance(args, Mapping):
            raise self.fail(f"expected a map, got {describe_value(args)}")
        self._check_parts(args)
        scheme = args.get("scheme", "")
        if ":" in scheme:
            raise self.fail("scheme must not contain ':'")
        username = urlparse.quote(args.get("username", ""), safe="")
        password = urlparse.quote(args.get("password", ""), safe="")
        credentials = ""
        if username or password:
            credentials = username + (f":{password}" if password else "") + "@"
        host = args.get("host", "")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        host = urlparse.quote(host, safe=":")
        if ":" in host:
            host = f"[{host}]"
        port = args.get("port")
        netloc = credentials + host + (f":{self._port(port)}" if port not in (None, "") else "")
        path = urlparse.quote(args.get("path", ""))
        query = urlparse.urlencode(args.get("query") or {}).replace("%2F", "/")
        fragment = urlparse.quote(args.get("fragment", ""))
        return urlparse.urlunsplit((scheme, netloc, path, query, fragment))


# -- conditions ----------------------------------------------------------------------------------


class Equals(Function):
    """`equals: [a, b]`: whether two values are equal (a condition function)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list) or len(self.args) != 2:
            raise self.fail(
                f"expected [value_1, value_2], got {describe_value(render_snippet(self.args))}"
            )

    def evaluate(self, args: Any) -> Any:
        first, second = args
        return bool(first == second)


class Not(Function):
    """`not: condition`: the negation of a condition (a name, a boolean or a function)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if self.args is None:
            raise self.fail("expected a condition (a name, a boolean or a condition function)")

    def check_names(self, names: TemplateNames) -> None:
        _check_condition_name(self, self.args, names)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        value, _ = bind_snippet(self.args, scope)
        return not condition_value(value, scope, self.where), False


class And(Function):
    """`and: [condition, condition, ...]`: true when every condition is (at least two)."""

    since = "2016-10-14"

    def check_arguments(self) -> None:
        if not isinstance(self.args, list) or len(self.args) < 2:
            raise self.fail(
                "expected a list of at least two conditions, got "
                + describe_value(render_snippet(self.args))
            )

    def check_names(self, names: TemplateNames) -> None:
        for item in self.args:
            _check_condition_name(self, item, names)

    def combine(self, values: Iterator[bool]) -> bool:
        """How the conditions combine."""
        return all(values)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        values, _ = bind_snippet(self.args, scope)
        return self.combine(condition_value(value, scope, self.where) for value in values), False


class Or(And):
    """`or: [condition, condition, ...]`: true when any condition is (at least two)."""

    def combine(self, values: Iterator[bool]) -> bool:
        return any(values)


def _check_condition_name(function: Function, value: Any, names: TemplateNames) -> None:
    if isinstance(value, str) and value not in names.conditions:
        raise function.fail(f"unknown condition {value!r}" + _did_you_mean(value, names.conditions))


class If(Function):
    """`if: [condition, value_if_true, value_if_false]`: the branch the condition selects;
    from 2021-04-16 the last argument may be left out, and a false condition then
    removes the enclosing list item, map entry or property."""

    since = "2016-10-14"

    # The outline (see SnippetParser.parse_outlined) of each branch.
    branch_outlines: tuple[Outline, ...] = ()

    @classmethod
    def from_snippet(
        cls, parser: SnippetParser, name: str, raw_args: Any, path: str, in_condition: bool
    ) -> Function:
        nullable = _version_at_least(parser.version, "2021-04-16")
        if not isinstance(raw_args, list) or len(raw_args) not in ((2, 3) if nullable else (3,)):
            form = "[condition, value_if_true, value_if_false]"
            if nullable:
                form += " or [condition, value_if_true]"
            raise TemplateError(
                f"{path}: {name}", f"expected {form}, got {describe_value(raw_args)}"
            )
        condition = parser.parse_condition(raw_args[0], f"{path}.{name}[0]")
        branches = [
            parser.parse_outlined(branch, f"{path}.{name}[{index}]")
            for index, branch in enumerate(raw_args[1:], start=1)
        ]
        function = cls(name, [condition, *(parsed for parsed, _ in branches)], path, parser.version)
        function.branch_outlines = tuple(outline for _, outline in branches)
        function.check_names(parser.names)
        return function

    def check_names(self, names: TemplateNames) -> None:
        _check_condition_name(self, self.args[0], names)

    def chosen_branch(self, scope: BindingScope) -> int | None:
        """The index (1 or 2) of the argument the condition selects; None to remove."""
        condition, _ = bind_snippet(self.args[0], scope)
        if condition_value(condition, scope, self.where):
            return 1
        return 2 if len(self.args) == 3 else None

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        branch = self.chosen_branch(scope)
        if branch is None:
            return REMOVED, False
        return bind_snippet(self.args[branch], scope)


# A snippet's outline: its get_resource/get_attr calls and its `if` calls (whose branches
# have outlines of their own). Dependencies follow from the outline alone, without
# walking the snippet's data or evaluating its other functions.
Outline = tuple[ResourceReference | If, ...]


def outline_references(outline: Outline, scope: BindingScope) -> Iterator[ResourceReference]:
    """The references of a snippet under the stack's conditions, names bound."""
    for site in outline:
        if isinstance(site, If):
            branch = site.chosen_branch(scope)
            if branch is not None:
                yield from outline_references(site.branch_outlines[branch - 1], scope)
        else:
            yield site.bound_reference(scope)


# -- the function tables -------------------------------------------------------------------------


_UNSUPPORTED = {
    "get_file": "a Convergence stack has no files map; put the content in the template "
    "or pass it as a parameter",
    "resource_facade": "there are no provider (nested) templates in Convergence",
    "yaql": "use the other intrinsic functions",
    "Fn::GetAZs": "there are no availability zones",
    "Fn::MemberListToMap": "use a map in the template",
    "Fn::ResourceFacade": "there are no provider (nested) templates in Convergence",
}

# CFN functions that HOT 2013-05-23 accepted, the version that removed them, and what
# to use instead.
_CFN_FUNCTIONS: dict[str, tuple[type[Function], str, str]] = {
    "Ref": (Ref, "2014-10-16", "get_resource or get_param"),
    "Fn::Join": (ListJoin, "2014-10-16", "list_join"),
    "Fn::Split": (CfnSplit, "2014-10-16", "str_split"),
    "Fn::Replace": (CfnReplace, "2014-10-16", "str_replace"),
    "Fn::Base64": (CfnBase64, "2014-10-16", "a plain string"),
    "Fn::Select": (CfnSelect, "2015-10-15", "a get_param or get_attr path"),
}

_VALUE_FUNCTIONS: dict[str, type[Function]] = {
    "get_param": GetParam,
    "get_resource": GetResource,
    "get_attr": GetAttr,
    "list_join": ListJoin,
    "str_replace": StrReplace,
    "repeat": Repeat,
    "digest": Digest,
    "str_split": StrSplit,
    "map_merge": MapMerge,
    "map_replace": MapReplace,
    "if": If,
    "filter": Filter,
    "str_replace_strict": StrReplaceStrict,
    "make_url": MakeUrl,
    "list_concat": ListConcat,
    "list_concat_unique": ListConcatUnique,
    "str_replace_vstrict": StrReplaceVeryStrict,
    "contains": Contains,
}

_CONDITION_FUNCTIONS: dict[str, type[Function]] = {
    "get_param": GetParam,
    "equals": Equals,
    "not": Not,
    "and": And,
    "or": Or,
    "contains": Contains,
}

FUNCTION_NAMES = frozenset(_VALUE_FUNCTIONS) | frozenset(_CONDITION_FUNCTIONS)


class SnippetParser:
    """Turns raw template snippets into parsed snippets for one template version."""

    def __init__(self, version: str, names: TemplateNames) -> None:
        self.version = version
        self.names = names
        self._outline: list[ResourceReference | If] = []

    def parse_outlined(self, snippet: Any, path: str) -> tuple[Any, Outline]:
        """Parse a value and record its outline on the way."""
        enclosing, self._outline = self._outline, []
        try:
            parsed = self.parse(snippet, path)
            return parsed, tuple(self._outline)
        finally:
            self._outline = enclosing

    def parse(self, snippet: Any, path: str) -> Any:
        """Parse a value (properties, metadata, an output value, ...)."""
        return self.parse_in_context(snippet, path, False)

    def parse_condition(self, snippet: Any, path: str) -> Any:
        """Parse a condition: only get_param and the condition functions are allowed."""
        return self.parse_in_context(snippet, path, True)

    def parse_in_context(self, snippet: Any, path: str, in_condition: bool) -> Any:
        """Parse a snippet as a value or (in_condition) as a condition."""
        if isinstance(snippet, dict):
            if len(snippet) == 1:
                name, raw_args = next(iter(snippet.items()))
                function = self._function(name, raw_args, path, in_condition)
                if function is not None:
                    return function
            return {
                key: self.parse_in_context(item, f"{path}.{key}", in_condition)
                for key, item in snippet.items()
            }
        if isinstance(snippet, list):
            return [
                self.parse_in_context(item, f"{path}[{index}]", in_condition)
                for index, item in enumerate(snippet)
            ]
        return snippet

    def _function(self, name: str, raw_args: Any, path: str, in_condition: bool) -> Function | None:
        where = f"{path}: {name}"
        if name in _UNSUPPORTED:
            raise TemplateError(
                where, f"{name} is not supported by Convergence: {_UNSUPPORTED[name]}"
            )
        if name in _CFN_FUNCTIONS:
            cfn_function, removed_in, instead = _CFN_FUNCTIONS[name]
            if self.version >= removed_in:
                raise TemplateError(
                    where,
                    f"{name} was removed in heat_template_version {removed_in} "
                    f"(this template is {self.version}); use {instead}",
                )
            # (No condition can hold one: conditions came in 2016-10-14, after the removal.)
            if cfn_function is Ref:
                return self._outlined(Ref.create(self, name, raw_args, path))
            return self._outlined(
                cfn_function.from_snippet(self, name, raw_args, path, in_condition)
            )
        table = _CONDITION_FUNCTIONS if in_condition else _VALUE_FUNCTIONS
        function_class = table.get(name)
        if function_class is None:
            if in_condition and name in _VALUE_FUNCTIONS:
                raise TemplateError(
                    where,
                    f"{name} is not allowed in a condition (conditions may use get_param, "
                    "equals, not, and, or, contains)",
                )
            if not in_condition and name in _CONDITION_FUNCTIONS:
                raise TemplateError(
                    where,
                    f"{name} is a condition function: use it in the conditions section, in a "
                    "resource or output condition, or as the first argument of if",
                )
            return None
        since = function_class.since
        if self.version < since:
            raise TemplateError(
                where,
                f"{name} needs heat_template_version {since} or later "
                f"(this template is {self.version})",
            )
        return self._outlined(function_class.from_snippet(self, name, raw_args, path, in_condition))

    def _outlined(self, function: Function) -> Function:
        if isinstance(function, (ResourceReference, If)):
            self._outline.append(function)
        return function
