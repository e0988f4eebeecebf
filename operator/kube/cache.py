"""The last known body of every Stack and StackResource, fed by watch events and our own writes.

Reading a Stack for every step of every node made each step cost a GET of an
object whose status holds the stack's whole graph, so creating n resources
cost O(n²) bytes read; counting resources by phase cost a LIST per Stack
change. Like a controller-runtime informer, this cache answers those reads
from what the watch streams and the responses to our own writes delivered.

Why a cached read is safe for the engine: a body in the cache is one the API
server really had, only possibly older than the newest. Every engine write is
a compare-and-set on the engine's version (or a push that is a single
idempotent key), so a decision taken on an old body fails its write as a
`Conflict` and is retaken; the store then drops the entry (`invalidate`), so
the retry reads from the API. A sync point read too early waits, and the push
that completes it arrives as a watch event, which updates the cache before it
wakes the node. What must never be missed is not read from here: the listing
of a stack's records when a traversal starts is always a LIST.

An entry only moves forward: a body older than the cached one (by
resourceVersion, which the API server hands out in increasing order for one
etcd) is ignored, so a late watch event never undoes a newer write's response.
Nor does a deleted object come back: the response to a write made just before
another worker (or replica) deleted the object may arrive after the watch's
DELETED event, and would otherwise stay in the cache for ever (counted in the
Stack's report by this replica, and not by the others).

A record's name known deleted (a DELETED event, or this process's own delete
that succeeded) is read as absent without asking the API (`known_absent`) until a
body of that name is seen again: each record is woken several times around
its delete (its own writes' events, pushes), and each wake read it anew, about
five GETs per record in the delete of a stack. Record names are unique; a
record made again under a name (a replica's late start of a change, see
operations.converge) is seen by its ADDED event, and traversals list records
from the API, never from here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from convergence.operator.kube.names import STACK_RESOURCES

CacheKey = tuple[str, str]  # (plural, name)
# Seconds a deleted object's uid is remembered, so that no late body brings it back.
TOMBSTONE_SECONDS = 600.0


def _resource_version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Packed:
    """A StackResource as the cache keeps it: its compact JSON, and what the cache itself
    reads of it without decoding."""

    uid: str | None
    version: int | None
    stack: str | None
    data: bytes


Entry = dict[str, Any] | _Packed


def _kept(plural: str, body: Mapping[str, Any]) -> Entry:
    """What the cache keeps of a body: without `metadata.managedFields`, which nothing
    here reads (about half of a StackResource's objects in memory).

    A StackResource is kept as its compact JSON (`_Packed`), decoded on each
    read. Parsed, a record held about 5 KB even with its keys and short
    strings shared between records, and its JSON is about 2.3 KB: with
    10,000 records cached that is some 27 MiB, for about 10 µs of decoding
    per read. Records are read about 54 times each per traversal (counted
    over create, update and delete of 1000: 162,000 decodes, 2.9 s of wall
    time in them against the operator's 42 s of CPU). A Stack is read by every
    step: it is kept as a shallow copy, which is safe as watch events and
    responses are new objects each time, never changed afterwards by their
    producer, and without its `spec.template`, which nothing reads from here
    (a step's template is its stored revision): a response to our own write
    of a Stack is kept until the watch brings the same version, and its
    template was one more copy of the largest part of the stack (1.3 MiB
    parsed for 1000 resources).
    """
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    spec = body.get("spec")
    if plural == STACK_RESOURCES:
        return _Packed(
            uid=metadata.get("uid"),
            version=_resource_version(body),
            stack=spec.get("stack") if isinstance(spec, Mapping) else None,
            data=json.dumps({**body, "metadata": metadata}, separators=(",", ":")).encode(),
        )
    if isinstance(spec, Mapping) and "template" in spec:
        return {
            **body,
            "metadata": metadata,
            "spec": {k: v for k, v in spec.items() if k != "template"},
        }
    return {**body, "metadata": metadata}


def _body(entry: Entry) -> dict[str, Any]:
    """The body an entry keeps (a packed one decoded anew: the caller's own)."""
    if isinstance(entry, _Packed):
        return cast(dict[str, Any], json.loads(entry.data))
    return entry


def _uid(entry: Entry) -> str | None:
    return entry.uid if isinstance(entry, _Packed) else entry["metadata"].get("uid")


def _version(entry: Entry) -> int | None:
    return entry.version if isinstance(entry, _Packed) else _resource_version(entry)


class ObjectCache:
    """Bodies by (plural, name) in one namespace. Thread-safe.

    Bodies are copied in (`_kept`). A Stack's is handed out as it is: callers
    read it and never change it (its status is large, and copying it per step
    would cost what the cache saves). A StackResource's is decoded for each
    read, so it is the caller's.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._bodies: dict[CacheKey, Entry] = {}
        # uid -> when its object was seen deleted.
        self._deleted: dict[str, float] = {}
        # (plural, name) -> when an object of that name was seen deleted.
        self._gone: dict[CacheKey, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bodies)

    def observe(self, plural: str, body: Mapping[str, Any]) -> None:
        """Keep `body` unless the cache holds a newer version of the same object."""
        name = str(body["metadata"]["name"])
        new = _resource_version(body)
        kept = _kept(plural, body)  # (made before the lock: other threads read meanwhile)
        with self._lock:
            if body["metadata"].get("uid") in self._deleted:
                return
            held = self._bodies.get((plural, name))
            if held is not None and _uid(held) == body["metadata"].get("uid"):
                old = _version(held)
                if old is not None and new is not None and new < old:
                    return
            self._bodies[(plural, name)] = kept
            self._gone.pop((plural, name), None)

    def forget(self, plural: str, body: Mapping[str, Any]) -> None:
        """The object is gone (a DELETED event): drop it unless a newer object took the name."""
        name = str(body["metadata"]["name"])
        uid = body["metadata"].get("uid")
        now = self._clock()
        with self._lock:
            self._mark_deleted(uid, now)
            held = self._bodies.get((plural, name))
            if held is None or _uid(held) == uid:
                self._bodies.pop((plural, name), None)
                self._mark_gone((plural, name), now)

    def deleted(self, plural: str, name: str, uid: str) -> None:
        """This process deleted the object `uid`: it is absent until a body of its name is
        seen, and no body of that object (a watch event from before the delete, which can
        come after it) brings it back, as after a DELETED event (`forget`)."""
        now = self._clock()
        with self._lock:
            self._mark_deleted(uid, now)
            self._bodies.pop((plural, name), None)
            self._mark_gone((plural, name), now)

    def _mark_deleted(self, uid: str | None, now: float) -> None:
        if not uid:
            return
        self._deleted[uid] = now
        if len(self._deleted) > 1024:
            self._deleted = {u: t for u, t in self._deleted.items() if now - t < TOMBSTONE_SECONDS}

    def _mark_gone(self, key: CacheKey, now: float) -> None:
        if key[0] != STACK_RESOURCES:
            return  # only record names are never given again (a Stack's name is the user's)
        self._gone[key] = now
        if len(self._gone) > 1024:
            self._gone = {k: t for k, t in self._gone.items() if now - t < TOMBSTONE_SECONDS}

    def known_absent(self, plural: str, name: str) -> bool:
        """Whether the object was seen deleted (and no body of its name since)."""
        with self._lock:
            return (plural, name) in self._gone

    def invalidate(self, plural: str, name: str) -> None:
        """Drop what is known of an object, so that the next read asks the API."""
        with self._lock:
            self._bodies.pop((plural, name), None)
            self._gone.pop((plural, name), None)

    def get(self, plural: str, name: str) -> Mapping[str, Any] | None:
        """The last known body (a Stack's read-only), or None when nothing is known (not: it
        is absent)."""
        with self._lock:
            entry = self._bodies.get((plural, name))
        return None if entry is None else _body(entry)

    def bodies(self, plural: str) -> list[Mapping[str, Any]]:
        """Every known body of one kind."""
        with self._lock:
            entries = [entry for (kind, _), entry in self._bodies.items() if kind == plural]
        return [_body(entry) for entry in entries]

    def resources_of(self, stack: str) -> list[Mapping[str, Any]]:
        """The known StackResources of a stack (for reporting, never for deciding)."""
        with self._lock:
            entries = [
                entry
                for (plural, _), entry in self._bodies.items()
                if isinstance(entry, _Packed) and plural == STACK_RESOURCES and entry.stack == stack
            ]
        return [_body(entry) for entry in entries]
