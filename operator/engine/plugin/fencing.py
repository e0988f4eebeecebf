"""A type's writes are checked against its engine's fence as they leave, not only before.

An engine acts on reality only while it has been alive to its peers, without
a break, since its step began (engine/actions.py, `_fenced`): a replica that
was frozen or cut off may have had its actions taken over, and what it read
before must not be written over what its peers did since. A check made once,
before the type's action, leaves the time the type takes to reach its write
uncovered (building the request, other requests before it, threads waiting
for the interpreter): a process frozen there wrote stale values when it woke.
So the step runs the type's action inside `acting`, and the layer that sends
requests to the API calls `check_write` right before each write: a write in a
step whose engine is fenced off raises `Fenced` and is never sent.

What is left is the time from that check to the request leaving the process:
no check made by the writer itself can cover a freeze there (the object
written would have to refuse stale writers itself, by a fencing token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from convergence.operator.engine.plugin.errors import Unavailable

_may_act: ContextVar[Callable[[], bool] | None] = ContextVar("may_act", default=None)


class Fenced(Unavailable):
    """This engine was not alive to its peers throughout the step: nothing is written
    (the step is tried again later, when whoever holds the action is known)."""


@contextmanager
def acting(may_act: Callable[[], bool]) -> Iterator[None]:
    """Within this block (this thread), every write asks `may_act` first."""
    token = _may_act.set(may_act)
    try:
        yield
    finally:
        _may_act.reset(token)


def check_write() -> None:
    """Raise `Fenced` when a write now would come from a step that is fenced off."""
    may_act = _may_act.get()
    if may_act is not None and not may_act():
        raise Fenced(
            "this operator replica was not alive to its peers throughout the step "
            "(its Lease went unrenewed): its actions may have been taken over"
        )
