"""The traversal graph: which node of a traversal waits for which.

A traversal converges a stack to a template by walking one graph with two kinds
of node per resource record:
- an *update node* for the record chosen for each resource of the new template
  (create, update in place or replace it), after the update nodes of what it
  requires in the new template;
- a *cleanup node* for every record that existed when the traversal started
  (delete it if it is no longer wanted), with the edges reversed: a record is
  cleaned up only after everything that required it was cleaned up, after its
  replacement was cleaned up (so a replaced record goes last), and after the
  update node of the same logical resource (so dependents moved away first).

The graph is computed once per traversal and stored with the stack as an edge
list; workers look up their node's predecessors and successors in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

UPDATE = "update"
CLEANUP = "cleanup"


@dataclass(frozen=True, order=True)
class Node:
    """One node of a traversal: the update or the cleanup of one resource record."""

    record_id: str
    is_update: bool

    @property
    def kind(self) -> str:
        """'update' or 'cleanup'."""
        return UPDATE if self.is_update else CLEANUP

    def key(self) -> str:
        """The node as a string (`update:<record id>`): sync point keys and stored edges."""
        return f"{self.kind}:{self.record_id}"

    @classmethod
    def parse(cls, key: str) -> Node:
        """The node a key() names."""
        kind, _, record_id = key.partition(":")
        if kind not in (UPDATE, CLEANUP) or not record_id:
            raise ValueError(f"not a graph node key: {key!r}")
        return cls(record_id, kind == UPDATE)

    def __str__(self) -> str:
        return self.key()


def update_node(record_id: str) -> Node:
    """The update node of a record."""
    return Node(record_id, True)


def cleanup_node(record_id: str) -> Node:
    """The cleanup node of a record."""
    return Node(record_id, False)


@dataclass(frozen=True)
class ExistingRecord:
    """What the graph needs to know about a record that exists when a traversal starts."""

    id: str
    name: str
    requires: frozenset[str]
    replaces: str | None


class Graph:
    """An immutable DAG of nodes; each node maps to the nodes it waits for (predecessors)."""

    def __init__(self, requirements: Mapping[Node, Iterable[Node]]) -> None:
        self._requires: dict[Node, frozenset[Node]] = {
            node: frozenset(reqs) for node, reqs in requirements.items()
        }
        for reqs in list(self._requires.values()):
            for req in reqs:
                self._requires.setdefault(req, frozenset())

    @classmethod
    def empty(cls) -> Graph:
        """The graph of a traversal with nothing to do."""
        return cls({})

    @cached_property
    def _required_by(self) -> dict[Node, frozenset[Node]]:
        successors: dict[Node, set[Node]] = {node: set() for node in self._requires}
        for node, reqs in self._requires.items():
            for req in reqs:
                successors[req].add(node)
        return {node: frozenset(succ) for node, succ in successors.items()}

    def __contains__(self, node: object) -> bool:
        return node in self._requires

    def __iter__(self) -> Iterator[Node]:
        return iter(self._requires)

    def __len__(self) -> int:
        return len(self._requires)

    def predecessors(self, node: Node) -> frozenset[Node]:
        """The nodes `node` waits for."""
        return self._requires[node]

    def successors(self, node: Node) -> frozenset[Node]:
        """The nodes waiting for `node`."""
        return self._required_by[node]

    def leaves(self) -> list[Node]:
        """Nodes that wait for nothing: where a traversal starts (cleanup first, like Heat)."""
        return sorted(
            (node for node, reqs in self._requires.items() if not reqs),
            key=lambda n: (n.is_update, n.record_id),
        )

    @cached_property
    def roots(self) -> frozenset[Node]:
        """Nodes nothing waits for: when all are done, the traversal is complete."""
        return frozenset(node for node, succ in self._required_by.items() if not succ)

    @cached_property
    def update_roots(self) -> frozenset[Node]:
        """Update nodes no update node waits for: when all are done, the stack is in service."""
        return frozenset(
            node
            for node, succ in self._required_by.items()
            if node.is_update and not any(s.is_update for s in succ)
        )

    def edge_count(self) -> int:
        """Number of edges."""
        return sum(len(reqs) for reqs in self._requires.values())

    def to_edges(self) -> list[tuple[str, str | None]]:
        """Serialise as (node, required node) pairs; a node without requirements pairs with None."""
        edges: list[tuple[str, str | None]] = []
        for node in sorted(self._requires):
            reqs = self._requires[node]
            if not reqs:
                edges.append((node.key(), None))
            edges.extend((node.key(), req.key()) for req in sorted(reqs))
        return edges

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str | None]]) -> Graph:
        """The graph to_edges() serialised."""
        requirements: dict[Node, set[Node]] = {}
        for node_key, req_key in edges:
            reqs = requirements.setdefault(Node.parse(node_key), set())
            if req_key is not None:
                reqs.add(Node.parse(req_key))
        return cls(requirements)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self._requires == other._requires

    def __hash__(self) -> int:
        return hash(frozenset(self._requires.items()))

    def __repr__(self) -> str:
        return f"Graph({len(self)} nodes, {self.edge_count()} edges)"


def traversal_graph(
    template_dependencies: Mapping[str, Iterable[str]],
    chosen: Mapping[str, str],
    existing: Iterable[ExistingRecord],
) -> Graph:
    """The graph of a traversal.

    `template_dependencies` maps each resource of the new template to the names
    it requires; `chosen` maps each of them to the id of the record its update
    node works on; `existing` are the records that existed before the traversal
    started (they all get a cleanup node, chosen or not).
    """
    requirements: dict[Node, set[Node]] = {}
    for name, required in template_dependencies.items():
        requirements[update_node(chosen[name])] = {update_node(chosen[dep]) for dep in required}

    existing = list(existing)
    existing_ids = {record.id for record in existing}
    for record in existing:
        requirements.setdefault(cleanup_node(record.id), set())
    for record in existing:
        mine = cleanup_node(record.id)
        # Reversed: what this record required is cleaned up after it.
        for required_id in record.requires:
            if required_id in existing_ids and required_id != record.id:
                requirements[cleanup_node(required_id)].add(mine)
        # The record this one replaced goes after it.
        if record.replaces in existing_ids and record.replaces != record.id:
            requirements[cleanup_node(record.replaces)].add(mine)
        # Only after the logical resource is in service (dependents moved away).
        if record.name in chosen:
            requirements[mine].add(update_node(chosen[record.name]))
    return Graph(requirements)
