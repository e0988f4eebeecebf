"""Structured logs: every line says which stack, resource and traversal it is about.

The work in hand is bound with `context(stack=..., resource=..., ...)` (a
context variable, so each worker thread and each kopf handler task has its
own); a filter on the log handler copies the bound fields onto every record
logged meanwhile. In JSON (the default of `convergence run`) they are keys of
the line; in text they follow the message in brackets.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

# The fields a line may carry, in the order the text format shows them.
FIELDS = ("namespace", "stack", "resource", "traversal")
JSON = "json"
TEXT = "text"
FORMATS = (JSON, TEXT)

_bound: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "convergence_log_context", default=MappingProxyType({})
)


@contextmanager
def context(**fields: str | None) -> Iterator[None]:
    """Bind fields (those not None) to every line logged in this block, on top of the outer ones."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bound() -> Mapping[str, str]:
    """The fields bound now."""
    return _bound.get()


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field given with `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class FieldsSuffixFormatter(logging.Formatter):
    """Another formatter's line, followed by the record's fields: `[stack=ns/a resource=b]`."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        fields = [f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name)]
        return f"{line} [{' '.join(fields)}]" if fields else line


def configure(log_format: str, verbose: bool) -> None:
    """kopf's logging setup, in `log_format`, with the bound fields on every line."""
    import kopf

    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == JSON else kopf.LogFormat.FULL,
        # In text, kopf's own lines about an object start with [namespace/name].
        log_prefix=log_format == TEXT,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(ContextFilter())
        if log_format == TEXT and handler.formatter is not None:
            handler.setFormatter(FieldsSuffixFormatter(handler.formatter))
