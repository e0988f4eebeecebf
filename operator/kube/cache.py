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

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from convergence.operator.kube.names import STACK_RESOURCES

CacheKey = tuple[str, str]  # (plural, name)
# Seconds a deleted object's uid is remembered, so that no late body brings it back.
TOMBSTONE_SECONDS = 600.0


def _resource_version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


# Strings up to this long are kept once however many bodies hold them.
SHARED_STRING_LENGTH = 100


def _kept(plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a body: without `metadata.managedFields`, which nothing
    here reads (about half of a StackResource's objects in memory).

    A StackResource is kept as a copy whose keys and short strings are shared
    with every other body's (`sys.intern`): a record's keys, traversal ids,
    phases, names and references repeat across records, and each parsed body
    held its own copies, about 12 KB a record; 5 KB shared. With 10,000
    records cached the operator's RSS went from 404 to 317 MiB. A Stack is
    few and large (its template): a shallow copy, which is safe as watch
    events and responses are new objects each time, never changed afterwards
    by their producer.
    """
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    if plural == STACK_RESOURCES:
        return {sys.intern(k): _shared(metadata if k == "metadata" else v) for k, v in body.items()}
    return {**body, "metadata": metadata}


def _shared(value: Any) -> Any:
    """A copy of parsed JSON whose keys and short strings are the interned ones."""
    if isinstance(value, dict):
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if type(value) is str and len(value) <= SHARED_STRING_LENGTH:
        return sys.intern(value)
    return value


class ObjectCache:
    """Bodies by (plural, name) in one namespace. Thread-safe.

    Bodies are copied in (`_kept`) and handed out as they are: callers read
    them and never change them (a Stack's status is large, and copying it per
    step would cost what the cache saves).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._bodies: dict[CacheKey, dict[str, Any]] = {}
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
            if held is not None and held["metadata"].get("uid") == body["metadata"].get("uid"):
                old = _resource_version(held)
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
            if held is None or held["metadata"].get("uid") == uid:
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
        """The last known body (read-only), or None when nothing is known (not: it is absent)."""
        with self._lock:
            return self._bodies.get((plural, name))

    def bodies(self, plural: str) -> list[Mapping[str, Any]]:
        """Every known body of one kind."""
        with self._lock:
            return [body for (kind, _), body in self._bodies.items() if kind == plural]

    def resources_of(self, stack: str) -> list[Mapping[str, Any]]:
        """The known StackResources of a stack (for reporting, never for deciding)."""
        with self._lock:
            return [
                body
                for (plural, _), body in self._bodies.items()
                if plural == STACK_RESOURCES and body.get("spec", {}).get("stack") == stack
            ]
