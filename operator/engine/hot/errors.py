"""How the template language reports an error: `TemplateError` says where and what,
`TemplateErrors` holds several (`ErrorCollector` gathers them), `describe_value` words the
offending value."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
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


class TemplateErrors(TemplateError):
    """Several independent errors of one template, each with its own `where`.

    `errors` holds them in template order; str() gives them all on one line,
    separated by "; " (a condition message, an Event), so that a user fixes them
    all at once. `where` and `message` are the first one's.
    """

    def __init__(self, errors: Sequence[TemplateError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        self.where = first.where
        self.message = first.message
        ValueError.__init__(self, "; ".join(str(error) for error in self.errors))


def combined(errors: Sequence[TemplateError]) -> TemplateError:
    """One error as itself, several as TemplateErrors (`errors` must not be empty)."""
    return errors[0] if len(errors) == 1 else TemplateErrors(errors)


class ErrorCollector:
    """Gathers the errors of independent parts of a template, so that a check reports them
    all rather than the first: each part is checked inside `part()`, and `check()` raises
    what was gathered."""

    def __init__(self, errors: Sequence[TemplateError] = ()) -> None:
        self.errors: list[TemplateError] = []
        self._seen: set[str] = set()
        for error in errors:
            self.add(error)

    def add(self, error: TemplateError) -> None:
        """Keep `error` (each of a TemplateErrors), once: a part checked twice says it once."""
        for one in error.errors if isinstance(error, TemplateErrors) else (error,):
            if str(one) not in self._seen:
                self._seen.add(str(one))
                self.errors.append(one)

    @contextlib.contextmanager
    def part(self) -> Iterator[None]:
        """Check one part: a TemplateError raised inside is kept, not raised."""
        try:
            yield
        except TemplateError as error:
            self.add(error)

    def check(self) -> None:
        """Raise what was gathered (one TemplateError, or TemplateErrors)."""
        if self.errors:
            raise combined(self.errors)


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
