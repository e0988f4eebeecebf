"""HOT functions that build strings and lists from strings: `list_join`, the `str_replace`
family, `str_split`, `digest`, `repeat`."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from convergence.operator.engine.hot.errors import describe_value
from convergence.operator.engine.hot.functions.snippets import (
    Function,
    json_dumps,
    render_snippet,
    version_at_least,
)


class ListJoin(Function):
    """`list_join: [delimiter, list, ...]`: join strings; several lists and JSON-serialised
    maps/lists as items from 2015-10-15 (also CFN `Fn::Join`, one list of strings)."""

    def _several_lists(self) -> bool:
        return self.name == "list_join" and version_at_least(self.version, "2015-10-15")

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
        if isinstance(value, (dict, list)) and version_at_least(self.version, "2015-10-15"):
            return json_dumps(value)
        expected = (
            "strings, numbers, maps or lists"
            if version_at_least(self.version, "2015-10-15")
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
        if version_at_least(self.version, "2017-09-01"):
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
        maps_allowed = permutations and version_at_least(self.version, "2016-10-14")
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
