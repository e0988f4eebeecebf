"""The operator's object cache: entries only move forward, and deleted objects stay gone."""

from __future__ import annotations

from typing import Any

from convergence.operator.kube.cache import TOMBSTONE_SECONDS, ObjectCache
from convergence.operator.kube.names import STACK_RESOURCES, STACKS


def body(name: str, uid: str, version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid, "resourceVersion": str(version)},
        "spec": {"stack": "s"},
    }


def test_an_older_body_never_replaces_a_newer_one() -> None:
    cache = ObjectCache()
    cache.observe(STACK_RESOURCES, body("r", "u1", 5))
    cache.observe(STACK_RESOURCES, body("r", "u1", 4))
    assert cache.get(STACK_RESOURCES, "r") == body("r", "u1", 5)


def test_a_write_response_that_arrives_after_the_deletion_does_not_bring_the_object_back() -> None:
    """Another replica deletes the record right after this one's write: the watch's DELETED
    event may be handled before the write's response is remembered."""
    cache = ObjectCache()
    cache.observe(STACK_RESOURCES, body("r", "u1", 5))
    cache.forget(STACK_RESOURCES, body("r", "u1", 7))
    cache.observe(STACK_RESOURCES, body("r", "u1", 6))
    assert cache.get(STACK_RESOURCES, "r") is None
    assert cache.resources_of("s") == []
    # A new object of the same name (another uid) is a new object.
    cache.observe(STACK_RESOURCES, body("r", "u2", 8))
    assert cache.get(STACK_RESOURCES, "r") == body("r", "u2", 8)


def test_tombstones_are_dropped_once_old_when_there_are_many() -> None:
    now = [0.0]
    cache = ObjectCache(clock=lambda: now[0])
    for index in range(1100):
        cache.forget(STACK_RESOURCES, body(f"r{index}", f"u{index}", 1))
    now[0] = TOMBSTONE_SECONDS + 1
    cache.forget(STACK_RESOURCES, body("late", "u-late", 1))
    cache.observe(STACK_RESOURCES, body("r0", "u0", 2))
    assert cache.get(STACK_RESOURCES, "r0") is not None, "an old tombstone was dropped"
    cache.observe(STACK_RESOURCES, body("late", "u-late", 2))
    assert cache.get(STACK_RESOURCES, "late") is None


def test_a_name_seen_deleted_is_absent_until_a_body_of_that_name_comes() -> None:
    """Reads of a deleted record answer absent without asking the API; a new object of the
    name, or a read that must ask the API (invalidate), ends that."""
    cache = ObjectCache()
    cache.observe(STACK_RESOURCES, body("r", "u1", 5))
    assert not cache.known_absent(STACK_RESOURCES, "r")
    cache.forget(STACK_RESOURCES, body("r", "u1", 7))
    assert cache.known_absent(STACK_RESOURCES, "r")
    cache.observe(STACK_RESOURCES, body("r", "u1", 6))
    assert cache.known_absent(STACK_RESOURCES, "r"), "a late body of the deleted object"
    cache.observe(STACK_RESOURCES, body("r", "u2", 8))
    assert not cache.known_absent(STACK_RESOURCES, "r")

    cache.deleted(STACK_RESOURCES, "r", "u2")
    assert cache.get(STACK_RESOURCES, "r") is None
    assert cache.known_absent(STACK_RESOURCES, "r")
    cache.observe(STACK_RESOURCES, body("r", "u2", 8))
    assert cache.get(STACK_RESOURCES, "r") is None, "a watch event from before our delete"
    assert cache.known_absent(STACK_RESOURCES, "r")
    cache.invalidate(STACK_RESOURCES, "r")
    assert not cache.known_absent(STACK_RESOURCES, "r")
    # A DELETED event of an older object of the name says nothing of the newer one.
    cache.observe(STACK_RESOURCES, body("r", "u3", 9))
    cache.forget(STACK_RESOURCES, body("r", "u2", 10))
    assert not cache.known_absent(STACK_RESOURCES, "r")
    assert cache.get(STACK_RESOURCES, "r") == body("r", "u3", 9)


def test_a_deleted_stacks_name_is_asked_of_the_api_again() -> None:
    """A user may make a Stack of the same name at once: only record names are never reused."""
    cache = ObjectCache()
    cache.observe(STACKS, body("hello", "u1", 5))
    cache.forget(STACKS, body("hello", "u1", 6))
    assert cache.get(STACKS, "hello") is None
    assert not cache.known_absent(STACKS, "hello")


def test_managed_fields_are_not_kept_and_the_observed_body_is_left_as_it_was() -> None:
    """About half of a StackResource's objects in memory are its managedFields, which
    nothing reads from the cache."""
    cache = ObjectCache()
    observed = body("r", "u1", 5)
    observed["metadata"]["managedFields"] = [{"manager": "m", "fieldsV1": {"f:status": {}}}]
    cache.observe(STACK_RESOURCES, observed)
    assert cache.get(STACK_RESOURCES, "r") == body("r", "u1", 5)
    assert "managedFields" in observed["metadata"]


def test_a_record_read_is_the_callers_own_and_a_stack_read_is_shared() -> None:
    """Records are kept as their JSON and decoded on each read (about 5 KB each parsed,
    2.3 KB as JSON): what a caller does with one read cannot change what the next
    read sees. A Stack is read by every step: it is handed out as kept, without its
    template."""
    cache = ObjectCache()
    long_value = "x" * 500
    observed = {
        **body("a", "u-a", 5),
        "status": {"phase": "CREATE_COMPLETE", "attributes": {"out": long_value}},
    }
    cache.observe(STACK_RESOURCES, observed)
    first = cache.get(STACK_RESOURCES, "a")
    assert first == observed
    assert first is not None
    first["status"]["phase"] = "changed by a caller"
    assert cache.get(STACK_RESOURCES, "a") == observed
    assert cache.resources_of("s") == [observed]
    assert cache.bodies(STACK_RESOURCES) == [observed]
    assert cache.resources_of("another stack") == []

    stack = body("hello", "u1", 5)
    stack["spec"] = {"template": {"resources": {"a": {"type": "T"}}}, "parameters": {"p": 1}}
    cache.observe(STACKS, stack)
    kept = cache.get(STACKS, "hello")
    assert kept is cache.get(STACKS, "hello")
    # Nothing reads a Stack's template from the cache: steps use the stored revision.
    assert kept == {**stack, "spec": {"parameters": {"p": 1}}}
    assert "template" in stack["spec"], "the observed body is left as it was"
