"""OS::Heat::ResourceGroup on the simulator: members of a child stack, named as Heat names them."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot
from convergence.reconcilers.resource_group import member_names, substituted


def group(
    count: int,
    *,
    removal: list[str] | None = None,
    policy: dict[str, Any] | None = None,
    **definition: Any,
) -> Any:
    properties: dict[str, Any] = {
        "count": count,
        "resource_def": definition
        or {"type": "OS::Heat::TestResource", "properties": {"value": "m-%index%"}},
    }
    if removal is not None:
        properties["removal_policies"] = [{"resource_list": removal}]
    resource: dict[str, Any] = {"type": "OS::Heat::ResourceGroup", "properties": properties}
    if policy is not None:
        resource["update_policy"] = policy
    return hot.template(
        {"g": resource},
        outputs={
            "refs": {"value": {"get_attr": ["g", "refs"]}},
            "refs_map": {"value": {"get_attr": ["g", "refs_map"]}},
            "values": {"value": {"get_attr": ["g", "output"]}},
            "second": {"value": {"get_attr": ["g", "resource.1"]}},
            "removed": {"value": {"get_attr": ["g", "removed_rsrc_list"]}},
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
    assert outputs["removed"] == ["0"]
    assert outputs["refs_map"]["1"] == refs["1"], "a member that stays was replaced"


def test_removal_policies_mode_update_lets_names_removed_before_be_used_again() -> None:
    sim = Simulator()
    converged(sim, group(3))
    assert converged(sim, group(3, removal=["1"]))["values"] == ["m-0", "m-2", "m-3"]
    # append (the default): "1" stays removed even when no policy names it any more.
    assert converged(sim, group(3, removal=[]))["removed"] == ["1"]
    template = group(3, removal=[])
    template["resources"]["g"]["properties"]["removal_policies_mode"] = "update"
    outputs = converged(sim, template)
    assert outputs["removed"] == []
    assert outputs["values"] == ["m-0", "m-1", "m-2"]


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


def child_of(sim: Simulator) -> str:
    (child,) = [n for n in sim.memory.stack_names() if n != "p"]
    return child


def child_templates(sim: Simulator) -> list[tuple[float, dict[str, str]]]:
    """Run until quiet; each distinct child template the group applied meanwhile, as
    member name -> its value property, with the time it was first seen."""
    seen: list[tuple[float, dict[str, str]]] = []

    def look() -> bool:
        stacks = [n for n in sim.memory.stack_names() if n != "p"]
        if stacks:
            child = sim.memory.get_stack(stacks[0])
            if child is not None and child.template is not None:
                resources = sim.memory.get_template(child.template).template["resources"]
                members = {n: r["properties"].get("value") for n, r in resources.items()}
                if not seen or seen[-1][1] != members:
                    seen.append((sim.clock.now(), members))
        return False

    sim.run_until(look)
    return seen


def records(sim: Simulator) -> dict[str, tuple[str, str]]:
    """The child's records by member: (record id, phase)."""
    return {r.name: (r.id, r.phase) for r in sim.resources(child_of(sim))}


def test_batch_create_grows_the_child_template_a_batch_at_a_time_with_pauses() -> None:
    sim = Simulator()
    sim.create("p", group(5, policy={"batch_create": {"max_batch_size": 2, "pause_time": 30}}))
    seen = child_templates(sim)
    assert [sorted(members) for _, members in seen] == [
        ["0", "1"],
        ["0", "1", "2", "3"],
        ["0", "1", "2", "3", "4"],
    ], seen
    times = [when for when, _ in seen]
    assert all(later - earlier >= 30 for earlier, later in itertools.pairwise(times)), times
    stack = sim.stack("p")
    assert stack.phase == "CREATE_COMPLETE", stack.status_reason
    assert stack.outputs["values"] == [f"m-{i}" for i in range(5)]


def test_a_rolling_update_gives_the_new_definition_a_batch_at_a_time_in_place() -> None:
    sim = Simulator()
    rolling = {"rolling_update": {"max_batch_size": 2, "min_in_service": 1}}
    converged(sim, group(4, policy=rolling))
    before = records(sim)
    changed: dict[str, Any] = {
        "type": "OS::Heat::TestResource",
        "properties": {"value": "n-%index%"},
    }
    sim.update("p", group(4, policy=rolling, **changed))
    seen = child_templates(sim)
    assert [members for _, members in seen] == [
        {"0": "m-0", "1": "m-1", "2": "m-2", "3": "m-3"},  # before the update
        {"0": "m-0", "1": "m-1", "2": "n-2", "3": "n-3"},
        {"0": "n-0", "1": "n-1", "2": "n-2", "3": "n-3"},
    ], seen
    assert sim.stack("p").phase == "UPDATE_COMPLETE", sim.stack("p").status_reason
    after = records(sim)
    assert {n: rid for n, (rid, _) in after.items()} == {n: rid for n, (rid, _) in before.items()}
    assert {phase for _, phase in after.values()} == {"UPDATE_COMPLETE"}


def test_keeping_more_in_service_than_a_batch_leaves_adds_members_for_a_while() -> None:
    sim = Simulator()
    rolling = {"rolling_update": {"max_batch_size": 2, "min_in_service": 3}}
    converged(sim, group(3, policy=rolling))
    before = records(sim)
    changed: dict[str, Any] = {
        "type": "OS::Heat::TestResource",
        "properties": {"value": "n-%index%"},
    }
    sim.update("p", group(3, policy=rolling, **changed))
    sizes = [len(members) for _, members in child_templates(sim)]
    assert max(sizes) > 3, sizes
    assert sizes[-1] == 3, sizes
    assert sim.stack("p").outputs["values"] == ["n-0", "n-1", "n-2"]
    assert {n: rid for n, (rid, _) in records(sim).items()} == {
        n: rid for n, (rid, _) in before.items()
    }


def test_scaling_with_a_policy_touches_only_the_members_that_change() -> None:
    sim = Simulator()
    policy = {
        "rolling_update": {"max_batch_size": 1},
        "batch_create": {"max_batch_size": 1},
    }
    converged(sim, group(3, policy=policy))
    before = records(sim)
    converged(sim, group(5, policy=policy))
    grown = records(sim)
    assert {n: grown[n] for n in before} == before, "a member that stays was touched"
    assert sorted(grown) == ["0", "1", "2", "3", "4"]
    converged(sim, group(2, policy=policy))
    assert records(sim) == {n: before[n] for n in ("0", "1")}


def test_a_definition_change_that_leaves_a_members_properties_alone_leaves_it_alone() -> None:
    sim = Simulator()
    first: dict[str, Any] = {
        "type": "OS::Heat::TestResource",
        "properties": {"value": {"if": [True, "same", "%index%"]}},
    }
    converged(sim, group(2, **first))
    before = records(sim)
    second: dict[str, Any] = {
        "type": "OS::Heat::TestResource",
        "properties": {"value": "same"},
        "metadata": {"tier": "web"},
    }
    converged(sim, group(2, **second))
    assert records(sim) == before


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"rolling_update": {"max_batch_size": 0}}, "update_policy: rolling_update.max_batch_size"),
        ({"batch_create": {"pause_time": -1}}, "update_policy: batch_create.pause_time"),
        ({"rolling_update": {"batch": 1}}, "update_policy: rolling_update.batch"),
        ({"canary": {}}, "update_policy: canary"),
    ],
)
def test_a_bad_update_policy_is_refused_before_anything_starts(
    policy: dict[str, Any], message: str
) -> None:
    sim = Simulator()
    with pytest.raises(TemplateError, match=re.escape(f"resources.g: {message}")):
        sim.create("p", group(2, policy=policy))
    assert sim.memory.get_stack("p") is None, "a refused template left a stack behind"


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"count": -1}, "count: Input should be greater than or equal to 0"),
        ({"index_var": "%"}, "index_var: String should have at least 3 characters"),
        ({"removal_policies": [{"names": ["0"]}]}, "removal_policies.0.names"),
        (
            {"resource_def": {"type": "OS::Heat::%index%"}},
            "resource_def.type: '%index%' is not replaced",
        ),
    ],
)
def test_bad_group_properties_are_refused_before_anything_starts(
    properties: dict[str, Any], message: str
) -> None:
    sim = Simulator()
    converged(sim, group(2))
    template = group(2)
    template["resources"]["g"]["properties"].update(properties)
    with pytest.raises(TemplateError, match=re.escape(f"resources.g: Property error: {message}")):
        sim.update("p", template)
    assert sim.stack("p").phase == "CREATE_COMPLETE", "a refused template started an update"


def test_a_count_known_only_when_the_group_runs_fails_the_group_saying_why() -> None:
    sim = Simulator()
    template = group(2)
    template["resources"]["n"] = {"type": "OS::Heat::Value", "properties": {"value": -1}}
    template["resources"]["g"]["properties"]["count"] = {"get_attr": ["n", "value"]}
    sim.create("p", template)
    sim.run_until_quiet()
    stack = sim.stack("p")
    assert stack.phase == "CREATE_FAILED"
    assert "count: Input should be greater than or equal to 0" in stack.status_reason, (
        stack.status_reason
    )
