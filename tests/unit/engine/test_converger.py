"""check_resource: one step on one node; stale traversals, locks, replacement, crashes."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from convergence.operator.engine import operations
from convergence.operator.engine.converger import check_resource
from convergence.operator.engine.graph import cleanup_node, update_node
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.messages import NodeMessage
from convergence.operator.engine.outcome import ActionResult, Outcome, acted
from convergence.operator.engine.plugin import (
    Fenced,
    PhysicalRecord,
    TypeRegistry,
    Unavailable,
    check_write,
)
from convergence.operator.engine.record_ids import replacement_id
from convergence.operator.engine.sim.simulator import InMemoryReality, Simulator
from convergence.operator.engine.store import (
    IN_PROGRESS,
    UPDATE,
    Conflict,
    NotFound,
    ResourceRecord,
    Store,
)
from convergence.operator.testing import hot
from convergence.reconcilers.heat_test_resource import TestResource

TYPE = "OS::Heat::TestResource"


def record_of(sim: Simulator, name: str, stack: str = "s") -> Any:
    live = [r for r in sim.resources(stack) if r.name == name]
    return max(live, key=lambda r: (r.created_at, r.id))


def test_a_step_starts_an_action_and_a_later_poll_completes_it() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    first = sim.step()
    assert first is not None
    assert first.outcome == acted("CREATE", ActionResult.STARTED)
    assert first.poll_after == 1.0
    assert record_of(sim, "A").phase == "CREATE_IN_PROGRESS"
    second = sim.step()
    assert second is not None
    assert second.outcome == acted("CREATE", ActionResult.COMPLETE)
    assert sim.stack("s").phase == "CREATE_COMPLETE"


def test_stale_traversal_message_without_lock_is_dropped() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={})))
    old = sim.stack("s").traversal
    sim.run_until_quiet()
    sim.update("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "b"}})))
    record = record_of(sim, "A")
    writes = sim.memory.total_writes
    report = check_resource(sim.engine, NodeMessage("s", old, update_node(record.id)))
    assert report.outcome.kind is Outcome.STALE_TRAVERSAL
    assert sim.memory.total_writes == writes, "a dropped message must not write"


def test_running_action_of_a_stale_traversal_finishes_then_reenters_the_newest() -> None:
    sim = Simulator()
    sim.create(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a", "wait_secs": 3}}))
    )
    sim.step()  # A's create starts
    sim.update("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "b"}})))
    new = sim.stack("s").traversal
    reports = [r for r in sim.run(20)]
    outcomes = [r.outcome for r in reports]
    assert any(o.kind is Outcome.BUSY for o in outcomes), outcomes
    complete = next(
        i for i, o in enumerate(outcomes) if o == acted("CREATE", ActionResult.COMPLETE)
    )
    assert reports[complete].triggered == [f"update:{record_of(sim, 'A').id}"]
    assert any(
        r.message.traversal == new and r.outcome == acted("UPDATE", ActionResult.STARTED)
        for r in reports[complete:]
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    assert [c.properties for c in sim.copies("s", "A")] == [{"value": "b"}]


def test_replacement_id_is_stable_per_record_and_traversal() -> None:
    assert replacement_id("r", "t1") == replacement_id("r", "t1") != replacement_id("r", "t2")


def test_worker_crash_after_taking_the_lock_resumes_without_a_duplicate() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    sim.crash_at_write(2)  # dies after the lock write, before the cookie write
    crashed = sim.step()
    assert crashed is not None
    assert crashed.outcome.kind is Outcome.WORKER_CRASHED
    assert len(sim.copies("s", "A")) == 1, "the create touched reality before dying"
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    assert len(sim.copies("s", "A")) == 1


def test_failure_marks_stack_failed_and_stops_new_work() -> None:
    sim = Simulator()
    sim.create(
        "s",
        hot.template(
            hot.resources(TYPE, A={"properties": {"fail": True}}, B={"depends_on": ["A"]})
        ),
    )
    sim.run_until_quiet()
    stack = sim.stack("s")
    assert stack.phase == "CREATE_FAILED"
    assert stack.status_reason == "Resource CREATE failed: ValueError: Test Resource failed A"
    assert record_of(sim, "B").phase == "INIT_COMPLETE"
    assert len(stack.graph) == 0, "a failed traversal is replaced by an empty one"


def test_a_rollback_a_restart_cut_off_starts_on_resume_and_a_cancel_stays_failed() -> None:
    """Failing and starting the rollback are two stack writes; a process can die between."""
    sim = Simulator()
    sim.create(
        "s",
        hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})),
        disable_rollback=False,
    )
    sim.run_until_quiet()
    sim.update(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "b", "wait_secs": 5}}))
    )
    updating = sim.stack("s").traversal
    # What mark_failed does before it dies: the first of its two writes.
    operations.stop_traversal(sim.engine, "s", updating, "Resource UPDATE failed: boom")
    assert sim.stack("s").phase == "UPDATE_FAILED"
    assert operations.resume_lost_rollback(sim.engine, "s")
    assert sim.stack("s").phase == "ROLLBACK_IN_PROGRESS"
    sim.run_until_quiet()
    assert sim.stack("s").phase == "ROLLBACK_COMPLETE"
    assert [c.properties["value"] for c in sim.copies("s", "A")] == ["a"]
    assert not operations.resume_lost_rollback(sim.engine, "s"), "once rolled back, nothing"

    # A cancel without rollback is failed on purpose: it stays failed.
    sim.update(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "c", "wait_secs": 5}}))
    )
    sim.cancel("s")
    assert sim.stack("s").phase == "UPDATE_FAILED"
    assert not operations.resume_lost_rollback(sim.engine, "s")
    assert sim.stack("s").phase == "UPDATE_FAILED"


def test_type_change_replaces_the_resource() -> None:
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    sim.run_until_quiet()
    none = hot.template(hot.resources("OS::Heat::None", A={}))
    sim.update("s", none)
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    assert sim.copies("s", "A") == []
    assert [r.type for r in sim.resources("s")] == ["OS::Heat::None"]


def test_an_invalid_template_stops_the_create_before_anything_is_stored() -> None:
    sim = Simulator()
    bad = hot.template(
        hot.resources(TYPE, A={"properties": {"value": {"str_split": [",", "a,b", 5]}}})
    )
    with pytest.raises(TemplateError, match=r"resources\.A"):
        sim.create("s", bad)
    assert sim.memory.total_writes == 0, "a rejected template must not write anything"
    assert sim.memory.get_stack("s") is None


def test_a_replacement_an_older_traversal_made_is_cleaned_up_not_replaced_again() -> None:
    """A record's wake-up runs its update node in the current traversal: a replacement
    an interrupted update made must not stand in for the record it replaces there
    (it would be replaced again, and that new record left behind)."""
    sim = Simulator()
    base = hot.template(
        hot.resources(TYPE, A={"properties": {"value": "a"}}, B={"depends_on": ["A"]})
    )
    sim.create("s", base)
    sim.run_until_quiet()
    original = record_of(sim, "A").id
    # B's slow update keeps the update from going in service: a rollback returns to `base`.
    replacing = hot.template(
        hot.resources(
            TYPE,
            A={"properties": {"value": "a", "update_replace_value": "v2"}},
            B={"depends_on": ["A"], "properties": {"value": "b", "wait_secs": 5}},
        )
    )
    sim.update("s", replacing)

    def replacement_created() -> bool:
        return any(
            r.replaces == original and r.phase == "CREATE_COMPLETE" for r in sim.resources("s")
        )

    assert sim.run_until(replacement_created)
    (stale,) = [r for r in sim.resources("s") if r.replaces == original]
    sim.rollback("s")
    rollback = sim.stack("s").traversal
    # What a watch event on the stale replacement makes the operator do.
    sim.trigger(NodeMessage("s", rollback, update_node(stale.id)))
    sim.run_until_quiet()
    assert sim.stack("s").phase == "ROLLBACK_COMPLETE"
    assert [r.id for r in sim.resources("s") if r.name == "A"] == [original]
    assert [c.properties for c in sim.copies("s", "A")] == [{"value": "a"}]


def test_nodes_run_again_after_an_update_write_nothing_and_wake_no_one() -> None:
    # The operator runs both nodes of a record on every wake-up, so a node that
    # runs again must not wake its successors again: after an update, A's update
    # node would wake B, B's cleanup node would wake A, and so on for ever.
    sim = Simulator()
    sim.create(
        "s",
        hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}}, B={"depends_on": "A"})),
    )
    sim.run_until_quiet()
    sim.update(
        "s",
        hot.template(hot.resources(TYPE, A={"properties": {"value": "a2"}}, B={"depends_on": "A"})),
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    traversal = sim.stack("s").traversal
    writes = sim.memory.total_writes
    for record in sim.resources("s"):
        for node in (update_node(record.id), cleanup_node(record.id)):
            report = check_resource(sim.engine, NodeMessage("s", traversal, node))
            assert report.triggered == [], f"{node} woke {report.triggered} ({report.outcome})"
    assert sim.memory.total_writes == writes, "a node that ran again wrote again"


def test_a_record_deleted_by_an_older_traversal_after_this_one_chose_it_restarts() -> None:
    """An older traversal's cleanup step that passed its traversal fence just before a
    rollback started deletes the record the rollback chose for its update node. That
    node can never run: the operation starts again on the records there are now."""
    sim = Simulator()
    base = hot.template(
        hot.resources(TYPE, A={"properties": {"value": "a"}}, B={"depends_on": ["A"]})
    )
    sim.create("s", base)
    sim.run_until_quiet()
    original = record_of(sim, "A")
    replacing = hot.template(
        hot.resources(
            TYPE,
            A={"properties": {"value": "a", "update_replace_value": "v2"}},
            B={"depends_on": ["A"], "properties": {"value": "b", "wait_secs": 5}},
        )
    )
    sim.update("s", replacing)
    assert sim.run_until(
        lambda: any(
            r.replaces == original.id and r.phase == "CREATE_COMPLETE" for r in sim.resources("s")
        )
    )
    sim.rollback("s")
    rollback = sim.stack("s").traversal
    assert update_node(original.id) in sim.stack("s").graph, "the rollback reuses the original"
    # What the older traversal's cleanup step does after its fence: it deletes the original.
    chosen = sim.memory.get_resource(original.id)
    assert chosen is not None
    sim.memory.delete_resource(chosen)
    sim.reality.delete(next(c.name for c in sim.copies("s", "A") if c.properties == {"value": "a"}))
    report = check_resource(sim.engine, NodeMessage("s", rollback, update_node(original.id)))
    assert report.outcome.kind is Outcome.RECORD_LOST
    assert sim.stack("s").traversal != rollback, "the rollback starts again"
    sim.run_until_quiet()
    assert sim.stack("s").phase == "ROLLBACK_COMPLETE"
    assert [c.properties for c in sim.copies("s", "A")] == [{"value": "a"}]
    assert len([r for r in sim.resources("s") if r.name == "A"]) == 1


def test_a_stale_action_ends_though_its_template_revision_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As when a namespace is deleted while the operator is down: its template revisions go
    first, then a restarted operator finishes the creates a stale traversal left running."""
    sim = Simulator()
    slow = {"properties": {"value": "a", "wait_secs": 3}}
    sim.create("s", hot.template(hot.resources(TYPE, A=slow, B=slow)))
    sim.run(2)  # both creates start
    revision = sim.stack("s").template
    assert revision is not None
    sim.delete("s")
    get_template = sim.memory.get_template

    def gone(revision_id: str) -> Any:
        if revision_id == revision:
            raise NotFound(f"template {revision_id!r}")
        return get_template(revision_id)

    monkeypatch.setattr(sim.memory, "get_template", gone)
    # A restarted operator: no definition in memory.
    sim.engine = replace(sim.engine, _cache={})
    sim.run_until_quiet()
    assert sim.stack("s").phase == "DELETE_COMPLETE"
    assert sim.resources("s") == []
    assert sim.copies("s", "A") == sim.copies("s", "B") == []


class FlakyBackend(TestResource):
    """A TestResource whose backend cannot answer the first create and the first check."""

    __test__ = False
    unanswered: ClassVar[list[str]] = []

    def create(self) -> Any:
        if "create" not in FlakyBackend.unanswered:
            FlakyBackend.unanswered.append("create")
            raise Unavailable("the API server is down")
        return super().create()

    def check_create_complete(self, cookie: Any) -> bool:
        if "check" not in FlakyBackend.unanswered:
            FlakyBackend.unanswered.append("check")
            raise Unavailable("etcd is restarting")
        return super().check_create_complete(cookie)


def test_an_unavailable_backend_fails_no_resource_and_the_step_is_tried_again() -> None:
    """An API server or etcd down for a moment is no failure of the resource: the step
    ends, is tried again, and the action goes on from where it was."""
    FlakyBackend.unanswered.clear()
    sim = Simulator(TypeRegistry({TYPE: FlakyBackend}))
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    sim.run_until_quiet()
    assert FlakyBackend.unanswered == ["create", "check"]
    outcomes = [r.outcome.kind for r in sim.trace]
    assert outcomes.count(Outcome.UNAVAILABLE) == 2, outcomes
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    assert [c.properties for c in sim.copies("s", "A")] == [{"value": "a"}]


def test_an_error_that_is_not_unavailability_still_fails_the_resource() -> None:
    class Broken(TestResource):
        __test__ = False

        def create(self) -> Any:
            raise RuntimeError("a bug in the type")

    sim = Simulator(TypeRegistry({TYPE: Broken}))
    sim.create("s", hot.template(hot.resources(TYPE, A={})))
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_FAILED"
    assert "RuntimeError: a bug in the type" in record_of(sim, "A").status_reason


def test_an_action_held_by_a_live_engine_is_left_to_it_and_taken_over_once_it_died() -> None:
    """Several engines (operator replicas) step the same records: the one that started an
    action holds it; another resumes it only once the holder is dead (Heat's engine_id lock
    and liveness check), and then holds it itself."""
    sim = Simulator()
    sim.create(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a", "wait_secs": 3}}))
    )
    started = sim.step()
    assert started is not None
    assert started.outcome == acted("CREATE", ActionResult.STARTED)
    record = record_of(sim, "A")
    assert (record.lock, record.holder) == (sim.stack("s").traversal, sim.engine.engine_id)
    message = NodeMessage("s", record.lock, update_node(record.id))

    dead: set[str] = set()
    other = replace(sim.engine, engine_id="other", alive=lambda engine: engine not in dead)
    writes = sim.memory.total_writes
    held = check_resource(other, message)
    assert held.outcome.kind is Outcome.HELD
    assert held.outcome.busy_with == sim.engine.engine_id
    assert held.poll_after == other.held_poll_interval, "looked at again, in case it dies"
    assert sim.memory.total_writes == writes, "a held record is not written"

    dead.add(sim.engine.engine_id)
    taken = check_resource(other, message)
    assert taken.outcome == acted("CREATE", ActionResult.IN_PROGRESS)
    assert record_of(sim, "A").holder == "other"
    # The first engine, back (or never dead after all), now leaves the action alone.
    first = replace(sim.engine, alive=lambda engine: True)
    assert check_resource(first, message).outcome.kind is Outcome.HELD
    sim.clock.advance_to(sim.clock.now() + 5)
    done = check_resource(other, message)
    assert done.outcome == acted("CREATE", ActionResult.COMPLETE)
    assert (record_of(sim, "A").lock, record_of(sim, "A").holder) == (None, None)
    assert len(sim.copies("s", "A")) == 1


def test_an_engine_that_was_not_alive_to_its_peers_throughout_a_step_does_not_act() -> None:
    """A replica frozen (or cut off from the API) long enough for its peers to judge it
    dead may have had its actions taken over: a step that began before the break acts on
    nothing, and the action goes on in a later step."""
    sim = Simulator()
    sim.create(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a", "wait_secs": 3}}))
    )
    fence: list[object | None] = [1]
    breaks: list[object | None] = [2]

    def broken_mid_step() -> object | None:
        # The step's start sees period 1; its check, after a break, period 2.
        return fence.pop() if fence else breaks[0]

    engine = replace(sim.engine, fence=broken_mid_step)
    message = sim.pending()[0]
    writes = sim.memory.total_writes
    fenced = check_resource(engine, message)
    assert fenced.outcome.kind is Outcome.HELD
    assert fenced.outcome.busy_with == engine.engine_id
    assert fenced.poll_after == engine.held_poll_interval
    assert sim.copies("s", "A") == [], "nothing was created"
    assert sim.memory.total_writes == writes + 1, "only the lock was written"
    record = record_of(sim, "A")
    assert record.pending is not None
    assert not record.pending.started

    not_alive = replace(sim.engine, fence=lambda: None)
    assert check_resource(not_alive, message).outcome.kind is Outcome.HELD
    assert sim.copies("s", "A") == []

    again = check_resource(sim.engine, message)
    assert again.outcome.kind is Outcome.ACTION
    assert again.outcome.action is not None
    assert again.outcome.action.again, "started anew"
    assert len(sim.copies("s", "A")) == 1
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE"


class CheckedReality:
    """Reality whose writes leave as the operator's do: through the step's fence check."""

    def __init__(self, inner: InMemoryReality) -> None:
        self.inner = inner

    def create(self, record: PhysicalRecord) -> None:
        check_write()
        self.inner.create(record)

    def update(self, record: PhysicalRecord) -> None:
        check_write()
        self.inner.update(record)

    def delete(self, name: str) -> None:
        check_write()
        self.inner.delete(name)

    def get(self, name: str) -> PhysicalRecord | None:
        return self.inner.get(name)


def test_a_write_of_a_type_whose_engine_broke_off_during_the_action_is_never_sent() -> None:
    """The fence is checked before the type's action and again as each of its writes
    leaves: a replica frozen between the two writes nothing when it wakes."""
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    calls = itertools.count()

    def broken_in_the_action() -> object | None:
        # The step's start and its check before the action see period 1; the write, 2.
        return 1 if next(calls) < 2 else 2

    checked = replace(sim.engine, reality=CheckedReality(sim.reality))
    fenced = replace(checked, fence=broken_in_the_action)
    message = sim.pending()[0]
    with pytest.raises(Fenced):
        check_resource(fenced, message)
    assert next(calls) == 3, "looked at when the step began, before the action, at the write"
    assert sim.copies("s", "A") == [], "nothing was written"
    record = record_of(sim, "A")
    assert record.pending is not None
    assert not record.pending.started

    again = check_resource(checked, message)
    assert again.outcome.action is not None
    assert again.outcome.action.again, "started anew"
    assert [copy.properties["value"] for copy in sim.copies("s", "A")] == ["a"]


def test_an_engine_back_from_a_break_confirms_a_record_it_holds_before_polling_its_action() -> None:
    """After a break, a replica's cache may show it still holding an action a peer took
    over meanwhile: once per period it shows its read current by a conditional write
    before it polls the action, and a stale read goes no further."""
    sim = Simulator()
    sim.create(
        "s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a", "wait_secs": 3}}))
    )
    sim.step()
    held = record_of(sim, "A")
    assert held.holder == sim.engine.engine_id
    assert held.pending is not None
    assert held.pending.started
    message = sim.pending()[0]
    resumed = replace(sim.engine, resumed=lambda: True, fence=lambda: 2)

    writes = sim.memory.total_writes
    polled = check_resource(resumed, message)
    assert polled.outcome == acted("CREATE", ActionResult.IN_PROGRESS)
    assert sim.memory.total_writes == writes + 1, "confirmed by one write"
    confirmed = record_of(sim, "A")
    check_resource(resumed, message)
    assert sim.memory.total_writes == writes + 1, "once per period"

    taken = sim.store.update_resource(replace(confirmed, holder="peer"))
    stale = replace(resumed, store=StaleReads(sim.store, confirmed))
    refused = check_resource(replace(stale, fence=lambda: 3), message)
    assert refused.outcome.kind is Outcome.CONFLICT
    assert refused.poll_after == 0
    assert record_of(sim, "A") == taken, "the peer's hold stands"


class StaleReads:
    """A store whose reads of one record give an older copy (a cache behind the API)."""

    def __init__(self, store: Store, stale: ResourceRecord) -> None:
        self._store = store
        self._stale = stale

    def get_resource(self, record_id: str) -> ResourceRecord | None:
        if record_id == self._stale.id:
            return self._stale
        return self._store.get_resource(record_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_change_asked_for_by_a_replica_that_read_an_older_generation_is_not_started() -> None:
    """A replica cut off for a while asks, when it is back, for the generation it read
    then: a later generation (or its retry) started meanwhile supersedes it."""
    sim = Simulator()
    first = hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}}))
    second = hot.template(hot.resources(TYPE, A={"properties": {"value": "b"}}))
    operations.create_stack(sim.engine, "s", first, desired="1")
    sim.run_until_quiet()
    started = operations.update_stack(sim.engine, "s", second, desired="2")
    stale = operations.update_stack(sim.engine, "s", first, desired="1")
    assert stale.traversal == started.traversal
    assert operations.create_stack(sim.engine, "s", first, desired="1").traversal == (
        started.traversal
    )
    retried = operations.update_stack(sim.engine, "s", second, desired="2 retry x")
    assert retried.traversal != started.traversal, "a retry of the same generation starts"
    assert operations.update_stack(sim.engine, "s", first, desired="1 retry y").traversal == (
        retried.traversal
    )
    sim.run_until_quiet()
    assert [c.properties for c in sim.copies("s", "A")] == [{"value": "b"}]


def test_replicas_starting_one_change_at_once_make_the_same_records_and_leave_none_over() -> None:
    """Two replicas hear of generation 2 together and both start it: the one whose stack write
    lands second made the very same new records (their ids derive from the change), so
    nothing it made is left over once it lost."""
    sim = Simulator()
    first = hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}}))
    second = hot.template(
        hot.resources(TYPE, A={"properties": {"value": "a"}}, B={"properties": {"value": "b"}})
    )
    operations.create_stack(sim.engine, "s", first, desired="1")
    sim.run_until_quiet()
    as_read = sim.stack("s")
    started = operations.update_stack(sim.engine, "s", second, desired="2")
    with pytest.raises(Conflict):
        operations.converge(sim.engine, as_read, started.template, UPDATE, desired="2")
    names = sorted(record.name for record in sim.memory.list_resources("s"))
    assert names == ["A", "B"]
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    assert [c.properties for c in sim.copies("s", "B")] == [{"value": "b"}]


def test_a_change_asked_for_again_by_another_replica_is_started_once() -> None:
    """Every replica hears of a new Stack generation and asks for it: the first start wins,
    the others find it started; a delete, too, is started once."""
    sim = Simulator()
    template = hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}}))
    created = operations.create_stack(sim.engine, "s", template, desired="1")
    again = operations.create_stack(sim.engine, "s", template, desired="1")
    assert again.traversal == created.traversal
    sim.run_until_quiet()
    updated_template = hot.template(hot.resources(TYPE, A={"properties": {"value": "b"}}))
    updated = operations.update_stack(sim.engine, "s", updated_template, desired="2")
    assert updated.traversal != created.traversal
    assert operations.update_stack(sim.engine, "s", updated_template, desired="2").traversal == (
        updated.traversal
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    deleting = operations.delete_stack(sim.engine, "s")
    assert operations.delete_stack(sim.engine, "s").traversal == deleting.traversal
    sim.run_until_quiet()
    assert sim.stack("s").phase == "DELETE_COMPLETE"


def test_a_root_stepped_again_after_its_traversal_is_over_lists_no_records() -> None:
    """Each push of a root looked for stray records once every root had arrived, so
    every later wake-up of a root listed the whole stack: O(n) reads per push."""
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={}, B={})))
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    listed: list[str] = []
    counted = replace(sim.engine, store=CountedLists(sim.store, listed))
    traversal = sim.stack("s").traversal
    again = check_resource(
        counted, NodeMessage("s", traversal, update_node(record_of(sim, "A").id))
    )
    assert again.outcome.kind is Outcome.DONE_ALREADY
    assert listed == []
    assert sim.stack("s").phase == "CREATE_COMPLETE"


class CountedLists:
    """A store that notes each listing of a stack's records (and calls `on_list` then)."""

    def __init__(
        self, store: Store, listed: list[str], on_list: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._listed = listed
        self._on_list = on_list

    def list_resources(self, stack: str) -> list[ResourceRecord]:
        self._listed.append(stack)
        if self._on_list is not None:
            self._on_list(stack)
        return self._store.list_resources(stack)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_workers_that_find_every_root_arrived_at_once_list_the_records_once() -> None:
    """The last roots of a traversal push at about the same time, and each finds every
    root arrived: one worker at a time looks for strays, and the ones after the first
    find the stack complete."""
    sim = Simulator()
    sim.create("s", hot.template(hot.resources(TYPE, A={}, B={})))
    sim.run_until_quiet()
    done = sim.stack("s")
    # Every root arrived, the completion not yet written.
    sim.store.update_stack(replace(done, status=IN_PROGRESS, status_reason=""))
    listed: list[str] = []
    second: list[threading.Thread] = []

    def finish() -> None:
        operations.root_done(counted, "s", done.traversal, done.graph)

    def list_while_another_worker_arrives(stack: str) -> None:
        if not second:
            second.append(threading.Thread(target=finish))
            second[0].start()
            second[0].join(timeout=0.5)  # it waits for this one (or, unserialised, lists too)

    store = CountedLists(sim.store, listed, on_list=list_while_another_worker_arrives)
    counted = replace(sim.engine, store=store)
    finish()
    second[0].join(timeout=5)
    assert listed == ["s"]
    assert sim.stack("s").phase == "CREATE_COMPLETE"


def test_a_definition_unused_for_a_while_is_forgotten_and_built_again_when_asked_for() -> None:
    """Every revision ever converged was kept for the process's life (a 1000-resource
    template's definition is several MiB): one unused for `definition_idle_seconds` goes."""
    sim = Simulator()
    built: list[str | None] = []
    load = sim.engine.definitions

    def counted(revision: Any, *args: Any) -> Any:
        built.append(None if revision is None else revision.id)
        return load(revision, *args)

    sim.engine = replace(sim.engine, definitions=counted, definition_idle_seconds=100.0)
    sim.create("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "a"}})))
    sim.run_until_quiet()
    first = sim.stack("s").template
    sim.update("s", hot.template(hot.resources(TYPE, A={"properties": {"value": "b"}})))
    sim.run_until_quiet()
    second = sim.stack("s").template
    assert first is not None
    assert second is not None
    assert first != second
    stack = operations.stack_ref(sim.stack("s"))
    sim.engine.definition(stack, first)
    sim.engine.definition(stack, second)
    before = len(built)
    # The second is used again after 60 s; the first is not, and is forgotten at 120 s.
    sim.clock.advance_to(sim.clock.now() + 60)
    sim.engine.definition(stack, second)
    sim.clock.advance_to(sim.clock.now() + 60)
    sim.engine.definition(stack, second)
    assert len(built) == before
    sim.engine.definition(stack, first)
    assert built[before:] == [first]
