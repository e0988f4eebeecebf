"""The traversal graph: update nodes in dependency order, cleanup nodes reversed."""

from __future__ import annotations

from convergence.operator.engine.graph import (
    ExistingRecord,
    Graph,
    Node,
    cleanup_node,
    traversal_graph,
    update_node,
)


def test_create_graph_has_only_update_nodes_in_dependency_order() -> None:
    graph = traversal_graph({"A": set(), "B": {"A"}}, {"A": "a", "B": "b"}, [])
    assert set(graph) == {update_node("a"), update_node("b")}
    assert graph.predecessors(update_node("b")) == {update_node("a")}
    assert graph.leaves() == [update_node("a")]
    assert graph.roots == {update_node("b")} == graph.update_roots


def test_cleanup_edges_are_reversed_and_follow_the_update_of_the_same_name() -> None:
    existing = [
        ExistingRecord("a", "A", frozenset(), None),
        ExistingRecord("b", "B", frozenset({"a"}), None),
    ]
    graph = traversal_graph({"A": set(), "B": {"A"}}, {"A": "a", "B": "b"}, existing)
    # A is cleaned up only after B (which required it) was cleaned up.
    assert cleanup_node("b") in graph.predecessors(cleanup_node("a"))
    # And only after its own update node.
    assert update_node("a") in graph.predecessors(cleanup_node("a"))
    assert update_node("b") in graph.predecessors(cleanup_node("b"))
    assert graph.roots == {cleanup_node("a")}
    assert graph.update_roots == {update_node("b")}


def test_removed_resource_gets_a_cleanup_node_without_update_node() -> None:
    existing = [
        ExistingRecord("a", "A", frozenset(), None),
        ExistingRecord("e", "E", frozenset({"a"}), None),
    ]
    graph = traversal_graph({"A": set()}, {"A": "a"}, existing)
    assert update_node("e") not in graph
    assert graph.predecessors(cleanup_node("e")) == frozenset()
    assert cleanup_node("e") in graph.predecessors(cleanup_node("a"))


def test_replaced_record_is_cleaned_after_its_replacement() -> None:
    existing = [
        ExistingRecord("old", "C", frozenset(), None),
        ExistingRecord("new", "C", frozenset(), "old"),
    ]
    graph = traversal_graph({"C": set()}, {"C": "new"}, existing)
    assert graph.predecessors(cleanup_node("old")) == {cleanup_node("new"), update_node("new")}


def test_edges_round_trip_through_their_serialised_form() -> None:
    existing = [
        ExistingRecord("a", "A", frozenset(), None),
        ExistingRecord("x", "X", frozenset({"a"}), None),
    ]
    graph = traversal_graph({"A": set(), "B": {"A"}}, {"A": "a", "B": "b"}, existing)
    assert Graph.from_edges(graph.to_edges()) == graph
    assert Node.parse("cleanup:x") == cleanup_node("x")
