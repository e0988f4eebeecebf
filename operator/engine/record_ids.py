"""Record ids: how a resource record is named, so that a person can read and sort the names.

A record id is `<stack>-<logical name>-<short id>`, e.g. `web-db-password-k3jx2mfa`:
- the stack's and the resource's names, lowercased, every run of characters
  other than `a-z` and `0-9` made one `-` (`My_DB.v2` → `my-db-v2`), and
  shortened so that the whole id fits in 63 characters (`RECORD_ID_MAX`);
- a short id of eight base32 characters (Heat's short_id) from a fresh unique
  id (`Engine.new_id`, random in the operator, seeded in the simulator), so
  that two records never share an id even where the readable part does (two
  versions of one resource, names that differ only in case or punctuation,
  names cut short).

The id is the record's key everywhere: a StackResource's object name, its node
keys (`update:<id>`), its owner references and labels. 63 characters make it a
DNS-1123 label, so it is also a label value and, after `update_` or `cleanup_`,
a ConfigMap key, whole. The physical names types derive (`ResourceContext.
physical_name`, `<stack>-<name>-<short id>`) end with the same short id.

A replacement's id keeps the readable part of the id it replaces and takes a
short id derived from that id and the traversal, so every retry of a step
makes the same replacement (`replacement_id`).

Records made by operators before this naming have bare UUIDs as ids. Those
keep working: their short id is derived from the UUID as it always was (so
their physical names stay the same), and their replacements keep the UUID
form those operators gave them, so that a replacement an older operator
marked in a traversal is the one this code finds.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

RECORD_ID_MAX = 63
SHORT_ID_CHARS = 8
# Room for the readable part: the id less "-" and the short id.
_READABLE_MAX = RECORD_ID_MAX - SHORT_ID_CHARS - 1
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_READABLE = re.compile(rf"^(?:[a-z0-9][-a-z0-9]*-)?([a-z2-7]{{{SHORT_ID_CHARS}}})$")


def is_uuid_id(record_id: str) -> bool:
    """Whether `record_id` is a bare UUID (the ids of records made by older operators)."""
    return _UUID.match(record_id) is not None


def short_id_of(unique: str) -> str:
    """Eight lowercase base32 characters derived from a unique id (a UUID's first five
    bytes, as Heat's short_id; any other string's hash)."""
    try:
        raw = uuid.UUID(unique).bytes[:5]
    except ValueError:
        raw = hashlib.sha256(unique.encode("utf-8")).digest()[:5]
    return base64.b32encode(raw).decode("ascii").lower()


def short_id(record_id: str) -> str:
    """A record's short id: the end of a readable id, or derived from a UUID id.

    ValueError for a string that is neither.
    """
    if is_uuid_id(record_id):
        return short_id_of(record_id)
    found = _READABLE.match(record_id)
    if found is None:
        raise ValueError(f"{record_id!r} is not a record id")
    return found.group(1)


def readable(text: str) -> str:
    """`text` lowercased, each run of characters other than a-z and 0-9 one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _shortened(text: str, room: int) -> str:
    return text[:room].rstrip("-")


def readable_part(stack: str, name: str) -> str:
    """`<stack>-<name>` made readable, at most `RECORD_ID_MAX - 9` characters.

    Shortened where it must be, each name giving up only what the other cannot
    spare: a short name stays whole next to a long one, and two long ones get
    half the room each.
    """
    stack, name = readable(stack), readable(name)
    room = _READABLE_MAX - 1  # less the '-' between them
    if len(stack) + len(name) > room:
        half = room // 2
        if len(stack) <= half:
            name = _shortened(name, room - len(stack))
        elif len(name) <= room - half:
            stack = _shortened(stack, room - len(name))
        else:
            stack, name = _shortened(stack, half), _shortened(name, room - half)
    return "-".join(part for part in (stack, name) if part)


def record_id(stack: str, name: str, unique: str) -> str:
    """The id of a new record of resource `name` in `stack`, made unique by `unique`."""
    part = readable_part(stack, name)
    suffix = short_id_of(unique)
    return f"{part}-{suffix}" if part else suffix


def replacement_id(record_id: str, traversal: str) -> str:
    """The id of the record replacing `record_id` in `traversal` (the same on every retry)."""
    derived = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{record_id}/{traversal}"))
    if _READABLE.match(record_id) is None:
        return derived  # a UUID id (or any other): replaced as older operators did
    part = record_id[: -SHORT_ID_CHARS - 1]
    suffix = short_id_of(derived)
    return f"{part}-{suffix}" if part else suffix
