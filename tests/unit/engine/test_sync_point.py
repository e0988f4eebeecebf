"""Sync points: one key per sender, entries of other traversals ignored."""

from __future__ import annotations

import pytest

from convergence.operator.engine import sync_point
from convergence.operator.engine.graph import cleanup_node, update_node
from convergence.operator.engine.store import InMemoryStore, NodeData, NotFound, ResourceRecord


@pytest.fixture
def store() -> InMemoryStore:
    store = InMemoryStore()
    store.create_resource(ResourceRecord(id="c", stack="s", name="C", type="T"))
    return store


def test_node_is_satisfied_only_when_every_predecessor_pushed_in_the_traversal(
    store: InMemoryStore,
) -> None:
    target, a, b = update_node("c"), update_node("a"), update_node("b")
    entries = sync_point.push(store, target, a, "t1", NodeData("a", "A", "ref-a", {"x": 1}))
    assert not sync_point.is_satisfied(entries, [a, b], "t1")
    assert sync_point.waiting_for(entries, [a, b], "t1") == [b]
    entries = sync_point.push(store, target, b, "t1", NodeData("b", "B", "ref-b"))
    assert sync_point.is_satisfied(entries, [a, b], "t1")
    inputs = sync_point.input_data(entries, [a, b], "t1")
    assert inputs["A"].attributes == {"x": 1}
    assert inputs["B"].reference_id == "ref-b"


def test_entries_of_a_stale_traversal_do_not_count(store: InMemoryStore) -> None:
    target, a = update_node("c"), update_node("a")
    entries = sync_point.push(store, target, a, "old", NodeData("a", "A", "ref"))
    assert not sync_point.is_satisfied(entries, [a], "new")
    assert sync_point.input_data(entries, [a], "new") == {}


def test_a_push_merges_one_key_and_keeps_the_others(store: InMemoryStore) -> None:
    target = cleanup_node("c")
    sync_point.push(store, target, cleanup_node("x"), "t", None)
    sync_point.push(store, target, cleanup_node("y"), "t", None)
    assert set(sync_point.read(store, target)) == {"cleanup:x", "cleanup:y"}
    # The update node's sync point is a different one.
    assert sync_point.read(store, update_node("c")) == {}


def test_push_to_a_deleted_record_raises_not_found(store: InMemoryStore) -> None:
    record = store.get_resource("c")
    assert record is not None
    store.delete_resource(record)
    with pytest.raises(NotFound):
        sync_point.push(store, update_node("c"), update_node("a"), "t", None)
