"""Node messages, and the dispatcher that delivers them to workers.

A node message says "run this node of this traversal": it is all a worker
step receives. The dispatcher is a queue in the simulator; in the operator a
change of the node's StackResource wakes its handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from convergence.operator.engine.graph import Node


@dataclass(frozen=True, order=True)
class NodeMessage:
    """'Run this node of this traversal': all a worker step receives."""

    stack: str
    traversal: str
    node: Node


class Dispatcher(Protocol):
    """Delivers node messages to workers (at least once)."""

    def trigger(self, message: NodeMessage) -> None:
        """Have a worker run `message` soon."""
        ...
