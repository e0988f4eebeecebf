"""The CloudFormation functions that heat_template_version 2013-05-23 still accepted
(`Ref`, `Fn::Join`, `Fn::Split`, `Fn::Replace`, `Fn::Base64`, `Fn::Select`), kept apart:
each was removed by a later version, which `CFN_FUNCTIONS` records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from convergence.operator.engine.hot.errors import TemplateError, describe_value
from convergence.operator.engine.hot.functions.references import GetParam, GetResource
from convergence.operator.engine.hot.functions.snippets import Function
from convergence.operator.engine.hot.functions.strings import ListJoin, StrReplace

if TYPE_CHECKING:
    from convergence.operator.engine.hot.functions.parser import SnippetParser


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


class CfnReplace(StrReplace):
    """CFN `Fn::Replace: [{key: value, ...}, template]` (2013-05-23 only)."""

    def _template_and_params(self, args: Any) -> tuple[Any, Any]:
        return args[1], args[0]

    def check_arguments(self) -> None:
        self.expect_list(self.args, "[{key: value, ...}, template]", lengths=[2])


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


# CFN functions that HOT 2013-05-23 accepted, the version that removed them, and what
# to use instead.
CFN_FUNCTIONS: dict[str, tuple[type[Function], str, str]] = {
    "Ref": (Ref, "2014-10-16", "get_resource or get_param"),
    "Fn::Join": (ListJoin, "2014-10-16", "list_join"),
    "Fn::Split": (CfnSplit, "2014-10-16", "str_split"),
    "Fn::Replace": (CfnReplace, "2014-10-16", "str_replace"),
    "Fn::Base64": (CfnBase64, "2014-10-16", "a plain string"),
    "Fn::Select": (CfnSelect, "2015-10-15", "a get_param or get_attr path"),
}
