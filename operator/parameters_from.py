"""`spec.parametersFrom`: stack parameters read from ConfigMaps and Secrets.

Each source names a ConfigMap or Secret of the stack's namespace and either one
`key` (its value goes to `parameter`, by default a parameter of the key's name)
or no key (every key becomes a parameter of its name). Sources are read when a
traversal starts and merged in order, later sources over earlier ones, and
`spec.parameters` over all of them: what the user wrote inline wins.

A missing object or key is a `ParametersNotFound` whose message names the
object and key, never a value (values from Secrets are often hidden parameters).
A source the stack may not read is a `ParametersForbidden` (raised by the
reader: see `kube/sources.py` for whose identity reads).
Reading the objects is the caller's business: `merged_parameters` takes a
function from (kind, name) to the object's string data, so it stays pure.

`spec.filesFrom` is read the same way, by the same reader and identity: each
source's keys become files of Heat's files map (every key a file of its name,
or one `key` the file `file`), later sources over earlier ones and
`spec.files` over all (`merged_files`); its errors are `FilesNotFound` and
`FilesForbidden`, saying `filesFrom`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import Any

CONFIG_MAP = "ConfigMap"
SECRET = "Secret"

# (kind, name) -> the object's data as strings, or None when it does not exist.
ReadSource = Callable[[str, str], Mapping[str, str] | None]


class ParametersUnavailable(Exception):
    """The stack's parameters cannot be read now; `reason` is the condition's reason."""

    reason = "ParametersUnavailable"


class ParametersNotFound(ParametersUnavailable, LookupError):
    """A ConfigMap, Secret or key named in spec.parametersFrom does not exist."""

    reason = "ParametersNotFound"


class ParametersForbidden(ParametersUnavailable, PermissionError):
    """A source named in spec.parametersFrom is not one the stack's identity may read."""

    reason = "ParametersForbidden"


class FilesNotFound(ParametersNotFound):
    """A ConfigMap, Secret or key named in spec.filesFrom does not exist."""

    reason = "FilesNotFound"


class FilesForbidden(ParametersForbidden):
    """A source named in spec.filesFrom is not one the stack's identity may read."""

    reason = "FilesForbidden"


def secret_strings(data: Mapping[str, str | bytes] | None) -> dict[str, str]:
    """A Secret's `data` (base64) as strings; a value that is not UTF-8 text is left out."""
    decoded: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    return decoded


def merged_parameters(
    parameters: Mapping[str, Any] | None,
    sources: Iterable[Mapping[str, Any]] | None,
    read: ReadSource,
) -> dict[str, Any]:
    """The stack's parameters: every source in order, then `parameters` over them."""
    found, missing = _merged_sources(sources, read, "parameter")
    if missing:
        raise ParametersNotFound("parametersFrom: not found: " + ", ".join(missing))
    merged: dict[str, Any] = {**found, **(parameters or {})}
    return merged


def merged_files(
    files: Mapping[str, str] | None,
    sources: Iterable[Mapping[str, Any]] | None,
    read: ReadSource,
) -> dict[str, str]:
    """The stack's files map: every source in order, then `files` over them."""
    try:
        found, missing = _merged_sources(sources, read, "file")
    except FilesForbidden:
        raise
    except ParametersForbidden as exc:
        raise FilesForbidden(str(exc)) from None
    if missing:
        raise FilesNotFound("filesFrom: not found: " + ", ".join(missing))
    return {**found, **(files or {})}


def _merged_sources(
    sources: Iterable[Mapping[str, Any]] | None, read: ReadSource, rename: str
) -> tuple[dict[str, str], list[str]]:
    """Every source's data merged in order (all its keys, or its one `key` under the name
    its `rename` field gives: `parameter`, `file`), and what was not found: objects and
    keys, never values."""
    merged: dict[str, str] = {}
    missing: list[str] = []
    for source in sources or ():
        kind, name = str(source.get("kind")), str(source.get("name"))
        data = read(kind, name)
        if data is None:
            missing.append(f"{kind} {name}")
            continue
        key = source.get("key")
        if key is None:
            merged.update(data)
        elif key in data:
            merged[str(source.get(rename) or key)] = data[key]
        else:
            missing.append(f"key {key!r} of {kind} {name}")
    return merged, missing
