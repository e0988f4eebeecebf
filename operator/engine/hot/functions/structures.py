"""HOT functions over maps and lists: `map_merge`, `map_replace`, `list_concat`,
`list_concat_unique`, `filter`, `contains`, and `make_url` (a URL from a map of its parts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib import parse as urlparse

from convergence.operator.engine.hot.errors import describe_value
from convergence.operator.engine.hot.functions.snippets import Function, render_snippet


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
