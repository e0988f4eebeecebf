"""Sync points: how a node learns that its predecessors in a traversal have finished.

Each node has a sync point per traversal: entries keyed by the sender node,
each carrying the sender's traversal id and, from update nodes, its data
(record id, logical name, reference id, referenced attributes). A finished
node *pushes* one entry into each successor's sync point; the successor runs
when its sync point holds an entry of the current traversal from every
predecessor. A push touches one key of one sync point, so contention is
limited to the direct predecessors of one node, and data for get_resource /
get_attr travels with the trigger. Entries of other traversals are ignored,
which is what makes an older traversal's late pushes harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from convergence.operator.engine.graph import Node
from convergence.operator.engine.store import NodeData, OwnPush, Store, SyncEntry


def arrived(entries: Mapping[str, SyncEntry], traversal: str) -> frozenset[str]:
    """Sender keys that have pushed in `traversal`."""
    return frozenset(sender for sender, entry in entries.items() if entry.traversal == traversal)


def has_pushed(entries: Mapping[str, SyncEntry], sender: Node, traversal: str) -> bool:
    """Whether `sender` has pushed in `traversal` already."""
    entry = entries.get(sender.key())
    return entry is not None and entry.traversal == traversal


def is_satisfied(
    entries: Mapping[str, SyncEntry], predecessors: Iterable[Node], traversal: str
) -> bool:
    """Whether every predecessor has pushed in `traversal`.

    One look per predecessor, until one is missing: the stack sync point holds
    an entry per root, and its check after each root's push made a set of all
    of them first, O(roots²) over a traversal (a seventh of the simulator's time
    in an update of 3000).
    """
    return all(has_pushed(entries, pred, traversal) for pred in predecessors)


def waiting_for(
    entries: Mapping[str, SyncEntry], predecessors: Iterable[Node], traversal: str
) -> list[Node]:
    """The predecessors that have not pushed in `traversal` yet."""
    senders = arrived(entries, traversal)
    return sorted(pred for pred in predecessors if pred.key() not in senders)


def input_data(
    entries: Mapping[str, SyncEntry], predecessors: Iterable[Node], traversal: str
) -> dict[str, NodeData]:
    """The data update-node predecessors sent in `traversal`, by logical name."""
    wanted = {pred.key() for pred in predecessors if pred.is_update}
    inputs: dict[str, NodeData] = {}
    for sender, entry in entries.items():
        if sender in wanted and entry.traversal == traversal and entry.data is not None:
            inputs[entry.data.name] = entry.data
    return inputs


def push(
    store: Store, target: Node, sender: Node, traversal: str, data: NodeData | None
) -> Mapping[str, SyncEntry]:
    """Merge the sender's entry into the target node's sync point; return the sync point."""
    return store.push(target.record_id, target.is_update, sender.key(), SyncEntry(traversal, data))


def own_push(target: Node, sender: Node, traversal: str) -> OwnPush:
    """The sender's entry for a target node of the sender's own record, to go with its write.

    Only an update node pushes into its own record's cleanup node, and it sends
    no data there.
    """
    assert target.record_id == sender.record_id, "a record's write pushes only into itself"
    return OwnPush(target.is_update, sender.key(), SyncEntry(traversal))


def read(store: Store, node: Node) -> Mapping[str, SyncEntry]:
    """The sync point of a node."""
    return store.sync_point(node.record_id, node.is_update)


def push_stack(store: Store, stack: str, sender: Node, traversal: str) -> Mapping[str, SyncEntry]:
    """Merge a root node's entry into the stack-complete sync point; return it."""
    return store.push_stack_sync_point(stack, sender.key(), SyncEntry(traversal))
