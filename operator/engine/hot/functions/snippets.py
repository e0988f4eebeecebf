"""Snippets and the `Function` base: how every HOT intrinsic function goes through three phases.

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
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from convergence.operator.engine.hot.errors import TemplateError, describe_value

if TYPE_CHECKING:
    from convergence.operator.engine.hot.functions.parser import SnippetParser


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest of `candidates` to a misspelt `name` ("" if none is close)."""
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
    """The data a required resource pushed to its dependents (ResourceData in hot/definition.py)."""

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

    A map, list or call that binding leaves as it was is the parsed one itself,
    not a copy (parsed and bound snippets are never changed once made): a
    definition keeps each bound resource, and copies of what binding did not
    change were about half of a large stack's definition in memory.
    """
    if isinstance(snippet, Function):
        return snippet.bind(scope)
    if isinstance(snippet, dict):
        bound_map: dict[str, Any] = {}
        dynamic = False
        same = True
        for key, item in snippet.items():
            value, item_dynamic = bind_snippet(item, scope)
            same = same and value is item
            if value is not REMOVED:
                bound_map[key] = value
                dynamic = dynamic or item_dynamic
        return snippet if same else bound_map, dynamic
    if isinstance(snippet, list):
        bound_list: list[Any] = []
        dynamic = False
        same = True
        for item in snippet:
            value, item_dynamic = bind_snippet(item, scope)
            same = same and value is item
            if value is not REMOVED:
                bound_list.append(value)
                dynamic = dynamic or item_dynamic
        return snippet if same else bound_list, dynamic
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
        """A copy of this call holding bound arguments (this call itself if they are its
        own: see `bind_snippet`)."""
        if args is self.args:
            return self
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


def version_at_least(version: str, since: str) -> bool:
    """Whether a dated heat_template_version is `since` or later (dates compare as strings)."""
    return version >= since
