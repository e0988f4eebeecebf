"""The plugin API and the two built-in types: OS::Heat::TestResource and OS::Heat::None."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from convergence.operator.engine.plugin import (
    ResourceContext,
    ResourceFailure,
    ResourceType,
    StackRef,
    TypeRegistry,
    changed_properties,
)
from convergence.operator.engine.sim.simulator import InMemoryReality, VirtualClock
from convergence.reconcilers.heat_test_resource import TestResource
from convergence.reconcilers.none_resource import NoneResource

RECORD_ID = "0f6c1d1e-3c5a-4e0b-9a44-7d1f7c5e2b11"


def make(
    plugin: type[Any],
    props: dict[str, Any],
    clock: VirtualClock,
    reality: InMemoryReality,
    **state: Any,
) -> Any:
    context = ResourceContext(StackRef("foo", "id"), "res", RECORD_ID, clock, reality, **state)
    return plugin(context, plugin.validate_properties(props))


def test_entry_points_provide_both_builtin_types() -> None:
    registry = TypeRegistry.from_entry_points()
    assert registry.get("OS::Heat::TestResource") is TestResource
    assert registry.get("OS::Heat::None") is NoneResource
    assert not registry.exists("OS::Nova::Server")


def test_update_allowed_comes_from_the_schema() -> None:
    assert TestResource.updatable("value")
    assert not TestResource.updatable("update_replace_value")


def test_test_resource_create_stores_value_and_waits_strictly_longer_than_wait_secs() -> None:
    clock, reality = VirtualClock(), InMemoryReality()
    plugin = make(TestResource, {"value": "v", "wait_secs": 2}, clock, reality)
    cookie = plugin.create()
    name = plugin.context.physical_name()
    assert plugin.context.resource_id == name
    assert name.startswith("foo-res-")
    assert reality.get(name) is not None
    assert plugin.get_attribute("output") == "v"
    clock.advance_to(2)
    assert not plugin.check_create_complete(cookie), "elapsed must be strictly greater"
    clock.advance_to(2.5)
    assert plugin.check_create_complete(cookie)


def test_test_resource_fail_creates_nothing_and_fails_after_the_wait() -> None:
    clock, reality = VirtualClock(), InMemoryReality()
    plugin = make(TestResource, {"fail": True}, clock, reality)
    cookie = plugin.create()
    assert plugin.context.resource_id is None
    assert reality.records == {}
    clock.advance_to(1)
    with pytest.raises(ResourceFailure, match="Test Resource failed res"):
        plugin.check_create_complete(cookie)


def test_test_resource_replaces_on_value_change_only_when_the_new_update_replace_is_true() -> None:
    clock, reality = VirtualClock(), InMemoryReality()
    before = TestResource.validate_properties({"value": "a"})
    after = TestResource.validate_properties({"value": "b", "update_replace": True})
    plugin = make(TestResource, {"value": "b", "update_replace": True}, clock, reality)
    assert plugin.needs_replace(before, changed_properties(before, after))
    only_flag = TestResource.validate_properties({"value": "a", "update_replace": True})
    plugin = make(TestResource, {"value": "a", "update_replace": True}, clock, reality)
    assert not plugin.needs_replace(before, changed_properties(before, only_flag))


def test_action_wait_secs_overrides_wait_secs_per_action() -> None:
    clock, reality = VirtualClock(), InMemoryReality()
    plugin = make(
        TestResource, {"wait_secs": 10, "action_wait_secs": {"create": 0}}, clock, reality
    )
    cookie = plugin.create()
    clock.advance_to(1)
    assert plugin.check_create_complete(cookie)
    delete_cookie = plugin.delete()
    clock.advance_to(5)
    assert not plugin.check_delete_complete(delete_cookie), "delete falls back to wait_secs"


def test_none_resource_ignores_properties_and_has_a_uuid_reference() -> None:
    clock, reality = VirtualClock(), InMemoryReality()
    before = NoneResource.validate_properties({"anything": 1})
    after = NoneResource.validate_properties({"anything": 2, "more": "x"})
    assert changed_properties(before, after) == frozenset()
    plugin = make(NoneResource, {"anything": 1}, clock, reality)
    plugin.create()
    reference = plugin.reference_id()
    assert reference is not None
    assert len(reference) == 36
    assert reality.records == {}
    assert plugin.get_attribute("x") is None


def test_invalid_properties_are_a_resource_failure() -> None:
    with pytest.raises(ResourceFailure, match="unknown"):
        TestResource.validate_properties({"unknown": 1})


def _get_concurrently(registry: TypeRegistry, type_name: str, threads: int) -> list[Exception]:
    errors: list[Exception] = []
    barrier = threading.Barrier(threads)

    def get() -> None:
        barrier.wait()
        try:
            registry.get(type_name)
        except Exception as exc:
            errors.append(exc)

    workers = [threading.Thread(target=get) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_a_type_loading_in_one_thread_is_never_unknown_to_another() -> None:
    def slow_load() -> type[ResourceType]:
        time.sleep(0.05)  # another worker asks meanwhile
        return TestResource

    registry = TypeRegistry.from_loaders({"OS::Heat::TestResource": slow_load})
    errors = _get_concurrently(registry, "OS::Heat::TestResource", 8)
    assert errors == [], f"concurrent lookups failed: {errors}"
