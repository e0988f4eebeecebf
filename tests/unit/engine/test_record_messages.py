"""A wake-up of one record: the node messages it runs (`messages_for_record`), on the simulator.

The operator's work queue is keyed by record, so everything it does after a
watch event, a poll, a failed step or a restart goes through this function;
the simulator runs it for a crashed worker and for a restart.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from convergence.operator.engine.converger import messages_for_record
from convergence.operator.engine.graph import cleanup_node, update_node
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.engine.store import DELETE, UPDATE, PendingAction, StackRecord
from convergence.operator.testing import hot

TYPE = "OS::Heat::TestResource"


def only_record(sim: Simulator, name: str) -> Any:
    (record,) = [r for r in sim.resources("s") if r.name == name]
    return record


def test_a_record_at_rest_runs_its_update_and_cleanup_nodes_in_the_current_traversal() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={})))
    record = only_record(sim, "A")
    stack = sim.stack("s")
    assert messages_for_record(stack, record.id, record) == [
        NodeMessage("s", stack.traversal, update_node(record.id)),
        NodeMessage("s", stack.traversal, cleanup_node(record.id)),
    ]


def test_a_deleted_record_still_runs_its_nodes_so_its_cleanup_pushes_on() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={})))
    stack = sim.stack("s")
    messages = messages_for_record(stack, "gone", None)
    assert [m.node for m in messages] == [update_node("gone"), cleanup_node("gone")]
    assert {m.traversal for m in messages} == {stack.traversal}


@pytest.mark.parametrize(
    ("action", "node"), [(UPDATE, update_node), (DELETE, cleanup_node)], ids=[UPDATE, DELETE]
)
def test_an_action_of_an_older_traversal_runs_first_in_its_own_traversal(
    action: str, node: Any
) -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={})))
    stack = sim.stack("s")
    held = replace(
        only_record(sim, "A"), lock="older", pending=PendingAction(action=action, traversal="older")
    )
    messages = messages_for_record(stack, held.id, held)
    assert messages[0] == NodeMessage("s", "older", node(held.id))
    assert [m.traversal for m in messages[1:]] == [stack.traversal] * 2


def test_an_action_of_the_current_traversal_is_not_run_twice() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"wait_secs": 3}})))
    sim.step()  # A's create starts and holds the lock in the current traversal
    record = only_record(sim, "A")
    assert record.lock == sim.stack("s").traversal
    assert len(messages_for_record(sim.stack("s"), record.id, record)) == 2


def test_nothing_runs_without_a_stack_or_before_its_first_traversal() -> None:
    assert messages_for_record(None, "r", None) == []
    assert messages_for_record(StackRecord(name="s", uid="u", traversal=""), "r", None) == []


def _update_with_replacement(sim: Simulator) -> None:
    sim.create(
        "s",
        hot.template(
            hot.resources(TYPE, A={"properties": {"value": "a"}}, B={"depends_on": ["A"]})
        ),
    )
    sim.run_until_quiet()
    sim.update(
        "s",
        hot.template(
            hot.resources(
                TYPE,
                A={"properties": {"value": "b", "update_replace": True}},
                B={"depends_on": ["A"], "properties": {"value": "b"}},
                C={"depends_on": ["B"]},
            )
        ),
    )


def _steps_of_update() -> int:
    sim = Simulator()
    _update_with_replacement(sim)
    return sim.run_until_quiet()


@pytest.mark.parametrize("cut", range(_steps_of_update() + 1))
def test_waking_every_record_once_after_a_restart_finishes_the_traversal(cut: int) -> None:
    """Whatever was in flight when the operator restarted, the listing's wake-ups suffice."""
    sim = Simulator()
    _update_with_replacement(sim)
    sim.run(cut)
    sim.restart("s")
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE", [str(r) for r in sim.trace[-5:]]
    assert sorted(c.logical_name for c in sim.reality.of_stack("s")) == ["A", "B", "C"]
