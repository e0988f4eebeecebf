"""OS::Heat::Stack on the simulator: a child stack in the same store, run by the same queue."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from convergence.operator.engine.plugin import nested_stack_name
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot


def child_template(*, fail: bool = False, extra: bool = False, wait: float = 0) -> str:
    resources: dict[str, Any] = {
        "inner": {
            "type": "OS::Heat::TestResource",
            "properties": {
                "value": {"get_param": "word"},
                "fail": fail,
                "action_wait_secs": {"delete": wait},
            },
        }
    }
    if extra:
        resources["more"] = {"type": "OS::Heat::TestResource", "properties": {"value": "m"}}
    return yaml.safe_dump(
        hot.template(
            resources,
            parameters={"word": {"type": "string", "default": "w"}},
            outputs={"said": {"value": {"get_attr": ["inner", "output"]}}},
        )
    )


def parent(word: str = "hello", *, db_type: str = "OS::Heat::Stack", **child: Any) -> Any:
    db: dict[str, Any] = {"type": db_type}
    if db_type == "OS::Heat::Stack":
        db["properties"] = {"template": child_template(**child), "parameters": {"word": word}}
    return hot.template(
        {
            "db": db,
            "app": {"type": "OS::Heat::TestResource", "depends_on": ["db"]},
        },
        outputs={"said": {"value": {"get_attr": ["db", "outputs", "said"]}}},
    )


def children(sim: Simulator) -> list[str]:
    return [name for name in sim.memory.stack_names() if name != "p"]


def created(template: Any, **options: Any) -> Simulator:
    sim = Simulator()
    sim.create("p", template, **options)
    sim.run_until_quiet()
    return sim


def test_the_child_is_named_after_parent_resource_and_record_and_gives_its_outputs() -> None:
    sim = created(parent("hello"))
    assert sim.stack("p").phase == "CREATE_COMPLETE", sim.stack("p").status_reason
    (child,) = children(sim)
    (db,) = [r for r in sim.resources("p") if r.name == "db"]
    assert child == nested_stack_name("p", "db", db.id) == db.resource_id == db.reference_id
    assert sim.stack(child).outputs == {"said": "hello"}
    assert sim.stack("p").outputs == {"said": "hello"}
    assert sim.stacks.parents[child].parent == "p"


def test_a_new_child_template_updates_the_same_child_in_place() -> None:
    sim = created(parent("hello"))
    (child,) = children(sim)
    sim.update("p", parent("hello", extra=True))
    sim.run_until_quiet()
    assert sim.stack("p").phase == "UPDATE_COMPLETE", sim.stack("p").status_reason
    assert children(sim) == [child]
    assert sim.stack(child).phase == "UPDATE_COMPLETE"
    assert sorted(r.name for r in sim.resources(child)) == ["inner", "more"]


def test_a_type_change_replaces_the_child_and_deletes_the_old_one() -> None:
    sim = created(parent("hello"))
    (child,) = children(sim)
    sim.update("p", parent(db_type="OS::Heat::None"))
    sim.run_until_quiet()
    assert sim.stack("p").phase == "UPDATE_COMPLETE", sim.stack("p").status_reason
    assert children(sim) == [], f"{child} outlived its resource"
    assert [r.logical_name for r in sim.reality.records.values()] == ["app"]


def test_the_parents_delete_completes_only_once_the_child_is_gone() -> None:
    sim = created(parent("hello", wait=3))
    (child,) = children(sim)
    sim.delete("p")
    assert sim.run_until(lambda: sim.stack("p").phase == "DELETE_COMPLETE")
    assert sim.memory.get_stack(child) is None, "the parent finished before its child"
    assert sim.reality.records == {}


def test_a_failed_update_of_the_child_fails_the_parent_and_rollback_restores_it() -> None:
    sim = created(parent("hello"), disable_rollback=False)
    sim.update("p", parent("bye", fail=True))
    sim.run_until_quiet()
    stack = sim.stack("p")
    assert stack.phase == "ROLLBACK_COMPLETE", stack.status_reason
    (child,) = children(sim)
    assert sim.stack(child).outputs == {"said": "hello"}
    assert [r.properties for r in sim.resources(child)] == [
        {"value": "hello", "fail": False, "action_wait_secs": {"delete": 0}}
    ]


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("heat_template_version: 2021-04-16\nresources: {a: {type: No::Such}}\n", "No::Such"),
        ("{unclosed: [\n", "template"),
        ("- a list\n", "a template is a mapping"),
    ],
)
def test_a_bad_child_template_fails_the_resource_saying_why(template: str, words: str) -> None:
    sim = created(
        hot.template({"db": {"type": "OS::Heat::Stack", "properties": {"template": template}}})
    )
    stack = sim.stack("p")
    assert stack.phase == "CREATE_FAILED"
    assert words in stack.status_reason, stack.status_reason
    assert children(sim) == []


def test_a_template_mapping_is_refused_with_a_hint_to_write_text() -> None:
    inline = {"heat_template_version": "2021-04-16", "resources": {}}
    sim = created(
        hot.template({"db": {"type": "OS::Heat::Stack", "properties": {"template": inline}}})
    )
    assert sim.stack("p").phase == "CREATE_FAILED"
    assert "is text" in sim.stack("p").status_reason, sim.stack("p").status_reason


def test_nested_stack_names_fit_an_object_name_and_a_label() -> None:
    record = "0b5d0a40-6c6f-4c61-9e41-2f3c1a0e8b7d"
    name = nested_stack_name("Parent_Stack", "My.Web Server", record)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert name.startswith("parent-stack-my-web-server-")
    long = nested_stack_name("p" * 80, "r" * 80, record)
    assert len(long) <= 63
    assert long != nested_stack_name("p" * 80, "r" * 80, "1" + record[1:])
