"""The parse phase: which function each `{name: args}` names in a template version, and the
parser that turns raw snippets into parsed ones (recording each snippet's outline).

`get_file` is done here, as Heat does it at parse time: the call is the text of
the file it names in the stack's files map (`spec.files`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from convergence.operator.engine.hot.errors import ErrorCollector, TemplateError
from convergence.operator.engine.hot.functions.cfn import CFN_FUNCTIONS, Ref
from convergence.operator.engine.hot.functions.conditions import And, Equals, If, Not, Or, Outline
from convergence.operator.engine.hot.functions.references import (
    GetAttr,
    GetParam,
    GetResource,
    ResourceReference,
)
from convergence.operator.engine.hot.functions.snippets import Function, TemplateNames
from convergence.operator.engine.hot.functions.strings import (
    Digest,
    ListJoin,
    Repeat,
    StrReplace,
    StrReplaceStrict,
    StrReplaceVeryStrict,
    StrSplit,
)
from convergence.operator.engine.hot.functions.structures import (
    Contains,
    Filter,
    ListConcat,
    ListConcatUnique,
    MakeUrl,
    MapMerge,
    MapReplace,
)

_UNSUPPORTED = {
    "resource_facade": "there are no provider (nested) templates in Convergence",
    "yaql": "use the other intrinsic functions",
    "Fn::GetAZs": "there are no availability zones",
    "Fn::MemberListToMap": "use a map in the template",
    "Fn::ResourceFacade": "there are no provider (nested) templates in Convergence",
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

GET_FILE = "get_file"
FUNCTION_NAMES = (
    frozenset(_VALUE_FUNCTIONS) | frozenset(_CONDITION_FUNCTIONS) | frozenset({GET_FILE})
)


class SnippetParser:
    """Turns raw template snippets into parsed snippets for one template version.

    With `errors`, a function call that fails is kept there and parsed as null, so
    that one pass finds every bad call; a call that fails only because a call in
    its arguments did is not reported twice.
    """

    def __init__(
        self,
        version: str,
        names: TemplateNames,
        errors: ErrorCollector | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        self.names = names
        self.errors = errors
        self.files = files or {}
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
                found = len(self.errors.errors) if self.errors is not None else 0
                try:
                    if name == GET_FILE and not in_condition:
                        return self._file(raw_args, f"{path}: {name}")
                    function = self._function(name, raw_args, path, in_condition)
                except TemplateError as error:
                    if self.errors is None:
                        raise
                    if len(self.errors.errors) == found:
                        self.errors.add(error)
                    return None
                if function is not None:
                    return function
            parsed = {
                key: self.parse_in_context(item, f"{path}.{key}", in_condition)
                for key, item in snippet.items()
            }
            return _unless_changed(snippet, parsed.values(), parsed)
        if isinstance(snippet, list):
            items = [
                self.parse_in_context(item, f"{path}[{index}]", in_condition)
                for index, item in enumerate(snippet)
            ]
            return _unless_changed(snippet, items, items)
        return snippet

    def _file(self, raw_args: Any, where: str) -> str:
        """The text get_file gives: the file of the stack's files map it names."""
        if not isinstance(raw_args, str) or not raw_args:
            raise TemplateError(where, "expected the name of a file of the stack's spec.files")
        text = self.files.get(raw_args)
        if text is None:
            known = ", ".join(sorted(self.files)) or "none"
            raise TemplateError(
                where, f"no file {raw_args!r} in the stack's spec.files (files: {known})"
            )
        return text

    def _function(self, name: str, raw_args: Any, path: str, in_condition: bool) -> Function | None:
        where = f"{path}: {name}"
        if name in _UNSUPPORTED:
            raise TemplateError(
                where, f"{name} is not supported by Convergence: {_UNSUPPORTED[name]}"
            )
        if name in CFN_FUNCTIONS:
            cfn_function, removed_in, instead = CFN_FUNCTIONS[name]
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


def _unless_changed(raw: dict[str, Any] | list[Any], items: Iterable[Any], parsed: Any) -> Any:
    """`raw` itself when parsing left each of its items as it was (no call in it), else
    `parsed`: a template's literal maps and lists are kept once, not once more parsed
    (the template document is never changed once read)."""
    raw_items = raw.values() if isinstance(raw, dict) else raw
    if all(new is old for new, old in zip(items, raw_items, strict=True)):
        return raw
    return parsed
