"""OS::Heat::ResourceGroup on the simulator: members of a child stack, named as Heat names them."""

from __future__ import annotations

from typing import Any

from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot
from convergence.reconcilers.resource_group import member_names, substituted


def group(count: int, *, removal: list[str] | None = None, **definition: Any) -> Any:
    properties: dict[str, Any] = {
        "count": count,
        "resource_def": definition
        or {"type": "OS::Heat::TestResource", "properties": {"value": "m-%index%"}},
    }
    if removal is not None:
        properties["removal_policies"] = [{"resource_list": removal}]
    return hot.template(
        {"g": {"type": "OS::Heat::ResourceGroup", "properties": properties}},
        outputs={
            "refs": {"value": {"get_attr": ["g", "refs"]}},
            "refs_map": {"value": {"get_attr": ["g", "refs_map"]}},
            "values": {"value": {"get_attr": ["g", "output"]}},
            "second": {"value": {"get_attr": ["g", "resource.1"]}},
        },
    )


def converged(sim: Simulator, template: Any) -> dict[str, Any]:
    if sim.memory.get_stack("p") is None:
        sim.create("p", template)
    else:
        sim.update("p", template)
    sim.run_until_quiet()
    stack = sim.stack("p")
    assert stack.status == "COMPLETE", stack.status_reason
    return dict(stack.outputs)


def test_names_skip_removed_ones_and_the_index_is_substituted_everywhere() -> None:
    assert member_names(3, set()) == ["0", "1", "2"]
    assert member_names(3, {"1"}) == ["0", "2", "3"]
    assert member_names(0, {"0"}) == []
    value = {"a": ["x-%i%", {"b": "%i%%i%"}], "n": 3}
    assert substituted(value, "%i%", "7") == {"a": ["x-7", {"b": "77"}], "n": 3}


def test_the_group_gives_refs_refs_map_member_lists_and_one_member() -> None:
    sim = Simulator()
    outputs = converged(sim, group(3))
    assert outputs["values"] == ["m-0", "m-1", "m-2"]
    assert list(outputs["refs_map"]) == ["0", "1", "2"]
    assert outputs["refs"] == list(outputs["refs_map"].values())
    assert outputs["second"] == outputs["refs_map"]["1"]


def test_a_removal_policy_may_name_a_member_by_its_reference_id() -> None:
    sim = Simulator()
    refs = converged(sim, group(3))["refs_map"]
    outputs = converged(sim, group(3, removal=[refs["0"]]))
    assert outputs["values"] == ["m-1", "m-2", "m-3"]
    assert outputs["refs_map"]["1"] == refs["1"], "a member that stays was replaced"


def test_a_new_definition_updates_the_members_in_place() -> None:
    sim = Simulator()
    before = converged(sim, group(2))["refs"]
    changed: dict[str, Any] = {
        "type": "OS::Heat::TestResource",
        "properties": {"value": "n-%index%"},
    }
    outputs = converged(sim, group(2, **changed))
    assert outputs["values"] == ["n-0", "n-1"]
    assert outputs["refs"] == before
    (child,) = [n for n in sim.memory.stack_names() if n != "p"]
    assert {r.phase for r in sim.resources(child)} == {"UPDATE_COMPLETE"}


def test_a_member_that_fails_fails_the_group_with_its_reason() -> None:
    sim = Simulator()
    broken: dict[str, Any] = {"type": "OS::Heat::TestResource", "properties": {"fail": True}}
    sim.create("p", group(2, **broken))
    sim.run_until_quiet()
    stack = sim.stack("p")
    assert stack.phase == "CREATE_FAILED"
    assert "nested stack p-g-" in stack.status_reason, stack.status_reason
    assert "Test Resource failed" in stack.status_reason, stack.status_reason
