"""The proposal's targets as properties of the engine on the simulator.

- Store writes per traversal are O(n + m): at most A·n + B·m + C, with n graph
  nodes and m graph edges, A = 6 (per node: INIT or replacement record, the
  replaced record's mark, lock, cookie, completion or deletion, one
  stack-complete push for a root), B = 1 (one sync point push per edge) and
  C = 4 (template revision, traversal start, ready, complete).
- No resource is worked on by two workers at once: an action never starts on
  a record while another action on it is in flight.
- Each attribute is read once per resource per traversal.
- No lock is wider than one node's sync point: a step writes only its own
  record (and the replacement it makes), pushes one key (its own) into its
  successors' sync points, and writes stack state by compare-and-set.
- A worker may die at any store write and the final reality is still right.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, ClassVar

import pytest

from convergence.operator.engine.converger import StepReport
from convergence.operator.engine.plugin import Cookie, PropertiesModel, TypeRegistry
from convergence.operator.engine.record_ids import replacement_id
from convergence.operator.engine.sim.scenario import reality_errors
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot
from convergence.reconcilers.heat_test_resource import TestResource
from convergence.reconcilers.none_resource import NoneResource

A, B, C = 6, 1, 4
TYPE = "OS::Heat::TestResource"


def random_dag(size: int, seed: int, value: str = "v", replace_every: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    resources: dict[str, dict[str, Any]] = {}
    for i in range(size):
        props: dict[str, Any] = {"value": f"{value}{i}"}
        earlier = [f"r{j}" for j in range(i)]
        deps = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
        if deps:
            props["value"] = {"get_attr": [deps[0], "output"]}
        if replace_every and i % replace_every == 0:
            props["update_replace_value"] = value
        resources[f"r{i}"] = {"properties": props, "depends_on": deps[1:]}
    return hot.template(hot.resources(TYPE, resources))


class Tracker:
    """Instrumentation shared by the counting resource type."""

    in_flight: ClassVar[dict[str, str]] = {}
    overlaps: ClassVar[list[str]] = []
    attribute_reads: ClassVar[Counter[tuple[str, str]]] = Counter()


class CountingResource(TestResource):
    """TestResource that records actions in flight and attribute reads."""

    __test__ = False

    def _begin(self, action: str) -> None:
        record = self.context.record_id
        if record in Tracker.in_flight:
            Tracker.overlaps.append(f"{action} of {record} during {Tracker.in_flight[record]}")
        Tracker.in_flight[record] = action

    def _checked(self, done: bool) -> bool:
        if done:
            Tracker.in_flight.pop(self.context.record_id, None)
        return done

    def create(self) -> Cookie:
        self._begin("create")
        return super().create()

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        self._begin("update")
        return super().update(before, changed)

    def delete(self) -> Cookie:
        self._begin("delete")
        return super().delete()

    def check_create_complete(self, cookie: Cookie) -> bool:
        return self._checked(super().check_create_complete(cookie))

    def check_update_complete(self, cookie: Cookie) -> bool:
        return self._checked(super().check_update_complete(cookie))

    def check_delete_complete(self, cookie: Cookie) -> bool:
        return self._checked(super().check_delete_complete(cookie))

    def get_attribute(self, name: str) -> Any:
        Tracker.attribute_reads[(self.context.record_id, name)] += 1
        return super().get_attribute(name)


@pytest.fixture
def counting() -> TypeRegistry:
    Tracker.in_flight.clear()
    Tracker.overlaps.clear()
    Tracker.attribute_reads.clear()
    return TypeRegistry(
        {"OS::Heat::TestResource": CountingResource, "OS::Heat::None": NoneResource}
    )


def traversal_writes(sim: Simulator, start: Any) -> tuple[int, int, int]:
    before = sim.memory.total_writes
    start()
    graph = sim.stack("s").graph
    sim.run_until_quiet()
    return sim.memory.total_writes - before, len(graph), graph.edge_count()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_store_writes_per_traversal_are_linear_in_nodes_and_edges(seed: int) -> None:
    sim = Simulator()
    checks = [
        ("create", lambda: sim.create("s", random_dag(60, seed))),
        ("update", lambda: sim.update("s", random_dag(60, seed, "w", replace_every=4))),
        ("shrink", lambda: sim.update("s", random_dag(30, seed, "x", replace_every=3))),
        ("delete", lambda: sim.delete("s")),
    ]
    for label, start in checks:
        writes, n, m = traversal_writes(sim, start)
        assert sim.stack("s").status == "COMPLETE", label
        assert writes <= A * n + B * m + C, f"{label}: {writes} writes > {A}·{n} + {B}·{m} + {C}"


def test_no_resource_is_worked_on_by_two_workers_at_once(counting: TypeRegistry) -> None:
    for seed in range(5):
        sim = Simulator(counting, seed=seed)
        slow = {"wait_secs": 2}
        sim.create(
            "s",
            hot.template(
                hot.resources(
                    TYPE,
                    {
                        "A": {"properties": {"value": "a", **slow}},
                        "B": {"properties": {"value": {"get_attr": ["A", "output"]}, **slow}},
                    },
                )
            ),
        )
        sim.run(3)
        sim.update(
            "s",
            hot.template(
                hot.resources(
                    TYPE,
                    {
                        "A": {"properties": {"value": "a2", **slow}},
                        "B": {"properties": {"value": {"get_attr": ["A", "output"]}}},
                    },
                )
            ),
        )
        sim.run(4)
        sim.update(
            "s",
            hot.template(
                hot.resources(
                    TYPE,
                    {
                        "A": {"properties": {"value": "a3"}},
                        "B": {"properties": {"value": {"get_attr": ["A", "output"]}}},
                    },
                )
            ),
        )
        sim.run_until_quiet()
        assert sim.stack("s").phase == "UPDATE_COMPLETE", seed
        assert Tracker.overlaps == [], Tracker.overlaps


def test_each_attribute_is_read_once_per_resource_per_traversal(counting: TypeRegistry) -> None:
    sim = Simulator(counting)
    resources: dict[str, dict[str, Any]] = {
        "C": {"properties": {"value": "c"}},
        "D": {"properties": {"value": {"get_attr": ["C", "output"]}}},
        "E": {"properties": {"value": {"get_attr": ["C", "output"]}}},
    }
    outputs = {"out": {"value": {"get_attr": ["C", "output"]}}}
    sim.create("s", hot.template(hot.resources(TYPE, resources), outputs=outputs))
    sim.run_until_quiet()
    c_id = next(r.id for r in sim.resources("s") if r.name == "C")
    assert Tracker.attribute_reads[(c_id, "output")] == 1, Tracker.attribute_reads
    assert sim.stack("s").outputs == {"out": "c"}
    sim.update(
        "s", hot.template(hot.resources(TYPE, {**resources, "C": {"properties": {"value": "c2"}}}))
    )
    sim.run_until_quiet()
    assert Tracker.attribute_reads[(c_id, "output")] == 2, "once more for the second traversal"
    d_id = next(r.id for r in sim.resources("s") if r.name == "D")
    assert Tracker.attribute_reads[(d_id, "output")] == 0, "nobody references D's attributes"


def test_a_step_writes_only_its_own_record_and_its_own_key_in_sync_points() -> None:
    sim = Simulator(seed=7)
    sim.memory.log_writes = True
    violations: list[str] = []

    def check(report: StepReport) -> None:
        writes = sim.memory.write_log[:]
        sim.memory.write_log.clear()
        node = report.message.node
        record = sim.memory.get_resource(node.record_id)
        own = {node.record_id, replacement_id(node.record_id, report.message.traversal)}
        senders = {node.key()}
        if record is not None and record.replaces is not None:
            senders.add(f"{node.kind}:{record.replaces}")
        for write in writes:
            if write.kind == "resource" and write.key not in own:
                violations.append(f"{report}: wrote record {write.key}")
            if write.kind in ("push", "stack_push") and write.key.split("/", 1)[1] not in senders:
                violations.append(f"{report}: pushed {write.key}")

    sim.create("s", random_dag(25, 5))
    sim.memory.write_log.clear()
    sim.observers.append(check)
    sim.run_until_quiet()
    sim.update("s", random_dag(25, 5, "w", replace_every=2))
    sim.memory.write_log.clear()
    sim.run(15)
    sim.update("s", random_dag(20, 5, "x", replace_every=3))
    sim.memory.write_log.clear()
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    assert violations == []


# -- a worker dying at every store write -------------------------------------------------------

FIVE = hot.template(
    hot.resources(
        TYPE,
        {
            "A": {"properties": {"value": "initial"}},
            "B": {"properties": {"value": "b"}},
            "C": {
                "depends_on": ["B"],
                "properties": {"update_replace_value": {"get_attr": ["A", "output"]}},
            },
            "D": {"properties": {"value": {"get_resource": "C"}}},
            "E": {"properties": {"value": {"get_attr": ["C", "output"]}}},
        },
    )
)
FIVE_UPDATED = hot.template(
    hot.resources(
        TYPE,
        {
            "A": {"properties": {"value": "updated"}},
            "B": {"properties": {"value": "b"}},
            "C": {
                "depends_on": ["B"],
                "properties": {"update_replace_value": {"get_attr": ["A", "output"]}},
            },
            "D": {"properties": {"value": {"get_resource": "C"}}},
            "E": {"properties": {"value": {"get_attr": ["C", "output"]}}},
        },
    )
)


def _updated_five(crash_at: int | None) -> Simulator:
    sim = Simulator()
    sim.create("s", FIVE)
    sim.run_until_quiet()
    sim.update("s", FIVE_UPDATED)
    if crash_at is not None:
        sim.crash_at_write(crash_at)
    sim.run_until_quiet()
    return sim


def _update_writes() -> int:
    sim = Simulator()
    sim.create("s", FIVE)
    sim.run_until_quiet()
    sim.update("s", FIVE_UPDATED)
    before = sim.store.step_writes
    sim.run_until_quiet()
    return sim.store.step_writes - before


@pytest.mark.parametrize("crash_at", range(1, _update_writes() + 1))
def test_worker_crash_at_any_write_of_an_update_with_replacement(crash_at: int) -> None:
    sim = _updated_five(crash_at)
    assert sim.crashes == 1, "the crash must have happened"
    stack = sim.stack("s")
    assert stack.phase == "UPDATE_COMPLETE", stack.status_reason
    errors = reality_errors(_observe(sim), FIVE_UPDATED, {}, "s", sim.engine.types)
    assert errors == []
    assert len(sim.resources("s")) == 5, "the replaced C record must be cleaned up"


def _observe(sim: Simulator) -> Any:
    from convergence.operator.engine.sim.scenario import SimulatorDriver

    return SimulatorDriver(sim).observe("s")
