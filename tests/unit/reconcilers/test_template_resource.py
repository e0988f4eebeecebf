"""Template resources on the simulator: a type naming a file of the files map is a nested stack.

The behaviours of Heat's functional tests (test_template_resource.py,
test_nested_get_attr.py's nested parts), in our words: properties are the
child's parameters, outputs its attributes, the registry (global and per
resource) reaches into the child, a template may wrap the type it is
registered for without recursing, and every mistake is refused before
anything is made.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from convergence.operator.engine import preview
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot


def server(suffix: str = "!", *, failing: bool = False) -> str:
    """A template resource's child: a TestResource saying `word` (required) and `suffix`;
    `failing` adds a resource that fails."""
    resources: dict[str, Any] = {
        "box": {
            "type": "OS::Heat::TestResource",
            "properties": {
                "value": {"list_join": ["", [{"get_param": "word"}, {"get_param": "suffix"}]]}
            },
        }
    }
    if failing:
        resources["bad"] = {"type": "OS::Heat::TestResource", "properties": {"fail": True}}
    return yaml.safe_dump(
        hot.template(
            resources,
            parameters={
                "word": {"type": "string"},
                "suffix": {"type": "string", "default": suffix},
            },
            outputs={"said": {"value": {"get_attr": ["box", "output"]}}},
        )
    )


SERVER = server()


def parent(resources: dict[str, Any], **outputs: Any) -> dict[str, Any]:
    return hot.template(resources, outputs={k: {"value": v} for k, v in outputs.items()})


def created(template: Any, files: dict[str, str], **options: Any) -> Simulator:
    sim = Simulator()
    sim.create("p", template, files=files, **options)
    sim.run_until_quiet()
    assert sim.stack("p").phase == "CREATE_COMPLETE", sim.stack("p").status_reason
    return sim


def record(sim: Simulator, name: str, stack: str = "p") -> Any:
    live = [r for r in sim.resources(stack) if r.name == name]
    return max(live, key=lambda r: (r.created_at, r.id))


def refused(template: Any, files: dict[str, str], **options: Any) -> str:
    sim = Simulator()
    with pytest.raises(TemplateError) as error:
        sim.create("p", template, files=files, **options)
    assert sim.memory.stack_names() == [], "nothing may be stored for a refused stack"
    return str(error.value)


def test_properties_are_the_child_parameters_and_outputs_its_attributes() -> None:
    sim = created(
        parent(
            {"web": {"type": "server.yaml", "properties": {"word": "hi"}}},
            said={"get_attr": ["web", "said"]},
            ref={"get_resource": "web"},
            every={"get_attr": ["web"]},
        ),
        {"server.yaml": SERVER},
    )
    web = record(sim, "web")
    assert web.type == "server.yaml"
    assert sim.stack("p").outputs == {
        "said": "hi!",
        "ref": web.resource_id,
        "every": {"said": "hi!"},
    }
    child = web.resource_id
    assert sim.stacks.parents[child].parent == "p"
    assert [c.properties for c in sim.copies(child, "box")] == [{"value": "hi!"}]


def test_a_stack_id_output_is_the_reference_id_as_in_heat() -> None:
    child = yaml.safe_dump(
        hot.template(
            {"box": {"type": "OS::Heat::TestResource", "properties": {"value": "v"}}},
            outputs={"OS::stack_id": {"value": {"get_resource": "box"}}},
        )
    )
    sim = created(
        parent({"web": {"type": "box.yaml"}}, ref={"get_resource": "web"}), {"box.yaml": child}
    )
    (box,) = sim.copies(record(sim, "web").resource_id, "box")
    assert sim.stack("p").outputs == {"ref": box.name}


def test_new_properties_and_new_file_content_update_the_same_child_in_place() -> None:
    template = parent({"web": {"type": "server.yaml", "properties": {"word": "a"}}})
    sim = created(template, {"server.yaml": SERVER})
    child = record(sim, "web").resource_id
    box = record(sim, "box", child).id

    template["resources"]["web"]["properties"]["word"] = "b"
    sim.update("p", template, files={"server.yaml": SERVER})
    sim.run_until_quiet()
    assert record(sim, "web").resource_id == child, "a property change must not replace"
    assert record(sim, "box", child).id == box, "the child's resource is updated in place"
    assert [c.properties for c in sim.copies(child, "box")] == [{"value": "b!"}]

    sim.update("p", template, files={"server.yaml": server("!!")})
    sim.run_until_quiet()
    assert sim.stack("p").phase == "UPDATE_COMPLETE", sim.stack("p").status_reason
    assert record(sim, "web").resource_id == child, "a new file content must not replace"
    assert [c.properties for c in sim.copies(child, "box")] == [{"value": "b!!"}]


def test_another_template_file_replaces_the_resource_and_deletes_the_old_child() -> None:
    files = {"a.yaml": SERVER, "b.yaml": SERVER}
    template = parent({"web": {"type": "a.yaml", "properties": {"word": "x"}}})
    sim = created(template, files)
    old = record(sim, "web").resource_id
    template["resources"]["web"]["type"] = "b.yaml"
    sim.update("p", template, files=files)
    sim.run_until_quiet()
    assert sim.stack("p").phase == "UPDATE_COMPLETE", sim.stack("p").status_reason
    new = record(sim, "web").resource_id
    assert new != old
    assert sim.memory.get_stack(old) is None, "the replaced child must be deleted"
    assert sim.memory.stack_names() == ["p", new]


def test_the_registry_reaches_into_the_child_and_a_template_may_wrap_its_own_type() -> None:
    # Heat's test_nested_env and test_no_infinite_recursion: My::Word is an alias the child
    # uses; OS::Heat::TestResource is mapped to a template that uses OS::Heat::TestResource.
    wrapper = yaml.safe_dump(
        hot.template(
            {"inner": {"type": "My::Word", "properties": {"value": {"get_param": "value"}}}},
            parameters={"value": {"type": "string", "default": "d"}},
            outputs={"output": {"value": {"get_attr": ["inner", "output"]}}},
        )
    )
    environment = {
        "resource_registry": {
            "My::Word": "OS::Heat::TestResource",
            "OS::Heat::TestResource": "wrapper.yaml",
        }
    }
    sim = created(
        parent(
            {"wrapped": {"type": "OS::Heat::TestResource", "properties": {"value": "v"}}},
            out={"get_attr": ["wrapped", "output"]},
        ),
        {"wrapper.yaml": wrapper},
        environment=environment,
    )
    wrapped = record(sim, "wrapped")
    assert wrapped.type == "wrapper.yaml"
    assert sim.stack("p").outputs == {"out": "v"}
    inner = record(sim, "inner", wrapped.resource_id)
    assert inner.type == "OS::Heat::TestResource", "inside, the wrapped type is the real one"


def test_a_per_resource_override_maps_only_that_resource() -> None:
    environment = {
        "resource_registry": {"resources": {"special": {"OS::Heat::TestResource": "server.yaml"}}}
    }
    sim = created(
        parent(
            {
                "special": {"type": "OS::Heat::TestResource", "properties": {"word": "s"}},
                "plain": {"type": "OS::Heat::TestResource", "properties": {"value": "p"}},
            }
        ),
        {"server.yaml": SERVER},
        environment=environment,
    )
    assert record(sim, "special").type == "server.yaml"
    assert record(sim, "plain").type == "OS::Heat::TestResource"


def test_get_file_in_a_child_reads_the_parents_files() -> None:
    child = yaml.safe_dump(
        hot.template(
            {"box": {"type": "OS::Heat::TestResource", "properties": {"value": "x"}}},
            outputs={"motd": {"value": {"get_file": "motd.txt"}}},
        )
    )
    sim = created(
        parent({"web": {"type": "box.yaml"}}, motd={"get_attr": ["web", "motd"]}),
        {"box.yaml": child, "motd.txt": "hello\n"},
    )
    assert sim.stack("p").outputs == {"motd": "hello\n"}


def test_environment_parameters_give_values_and_the_stacks_own_win() -> None:
    template = hot.template(
        {"r": {"type": "OS::Heat::Value", "properties": {"value": {"get_param": "a"}}}},
        parameters={"a": {"type": "string"}, "b": {"type": "string", "default": "x"}},
        outputs={"a": {"value": {"get_param": "a"}}, "b": {"value": {"get_param": "b"}}},
    )
    environment = {"parameters": {"a": "env", "b": "env"}, "parameter_defaults": {"b": "dflt"}}
    sim = Simulator()
    sim.create("p", template, {"b": "mine"}, environment=environment)
    sim.run_until_quiet()
    assert sim.stack("p").outputs == {"a": "env", "b": "mine"}


def test_parameter_defaults_give_a_child_its_required_parameters() -> None:
    sim = created(
        parent({"web": {"type": "server.yaml"}}, said={"get_attr": ["web", "said"]}),
        {"server.yaml": SERVER},
        environment={"parameter_defaults": {"word": "dflt"}},
    )
    assert sim.stack("p").outputs == {"said": "dflt!"}


def test_deleting_the_parent_deletes_every_child() -> None:
    sim = created(
        parent(
            {
                "a": {"type": "server.yaml", "properties": {"word": "a"}},
                "b": {"type": "server.yaml", "properties": {"word": "b"}},
            }
        ),
        {"server.yaml": SERVER},
    )
    assert len(sim.memory.stack_names()) == 3
    sim.delete("p")
    sim.run_until_quiet()
    assert sim.stack("p").phase == "DELETE_COMPLETE", sim.stack("p").status_reason
    assert sim.memory.stack_names() == ["p"]
    assert sim.reality.records == {}


def test_a_failed_update_rolls_back_to_a_child_of_the_old_template() -> None:
    # The failed child is replaced (as the engine replaces every FAILED resource; Heat
    # would update its nested stack in place): the one in service has the old template.
    template = parent({"web": {"type": "server.yaml", "properties": {"word": "a"}}})
    sim = created(template, {"server.yaml": SERVER}, disable_rollback=False)
    sim.update("p", template, files={"server.yaml": server(failing=True)})
    sim.run_until_quiet()
    assert sim.stack("p").phase == "ROLLBACK_COMPLETE", sim.stack("p").status_reason
    child = record(sim, "web").resource_id
    assert sim.memory.stack_names() == ["p", child], "the failed child must be deleted"
    assert sim.copies(child, "bad") == []
    assert [c.properties for c in sim.copies(child, "box")] == [{"value": "a!"}]


# -- refused before anything is made -------------------------------------------------------------


def test_a_missing_template_file_is_refused_naming_the_resource_and_file() -> None:
    message = refused(parent({"web": {"type": "server.yaml"}}), {"other.yaml": SERVER})
    assert message == (
        "resources.web.type: template 'server.yaml' is not in the stack's spec.files "
        "(files: other.yaml)"
    )


def test_a_registry_entry_to_a_missing_file_says_which_entry() -> None:
    message = refused(
        parent({"web": {"type": "My::Server"}}),
        {},
        environment={"resource_registry": {"My::Server": "server.yaml"}},
    )
    assert "resources.web.type: template 'server.yaml' (mapped from 'My::Server'" in message


@pytest.mark.parametrize(
    ("files", "chain"),
    [
        ({"a.yaml": {"x": "a.yaml"}}, "a.yaml -> a.yaml"),
        ({"a.yaml": {"x": "b.yaml"}, "b.yaml": {"y": "a.yaml"}}, "a.yaml -> b.yaml -> a.yaml"),
    ],
)
def test_a_template_that_uses_itself_is_refused_naming_the_chain(
    files: dict[str, dict[str, str]], chain: str
) -> None:
    texts = {
        name: yaml.safe_dump(hot.template({r: {"type": t} for r, t in uses.items()}))
        for name, uses in files.items()
    }
    message = refused(parent({"top": {"type": "a.yaml"}}), texts)
    assert message.startswith("resources.top.type: in template 'a.yaml': "), message
    assert f"a template cannot use itself: {chain}" in message, message


def test_a_template_mapped_through_the_registry_to_itself_is_refused() -> None:
    # The entry that mapped a resource is dropped in its child, but a second alias is not.
    loop = yaml.safe_dump(hot.template({"again": {"type": "My::B"}}))
    message = refused(
        parent({"top": {"type": "My::A"}}),
        {"loop.yaml": loop},
        environment={"resource_registry": {"My::A": "loop.yaml", "My::B": "loop.yaml"}},
    )
    assert "a template cannot use itself: loop.yaml -> loop.yaml" in message, message


def test_bad_properties_of_a_template_resource_are_refused_at_their_paths() -> None:
    message = refused(
        parent({"web": {"type": "server.yaml", "properties": {"wrod": "x"}}}),
        {"server.yaml": SERVER},
    )
    assert (
        "resources.web.properties.wrod: unknown property: template 'server.yaml' has no "
        "parameter 'wrod' (its parameters: suffix, word)"
    ) in message
    assert (
        "resources.web.properties: missing required property 'word' (a parameter of "
        "template 'server.yaml' without a default)"
    ) in message


def test_property_values_known_before_the_traversal_are_checked_as_the_child_would() -> None:
    child = yaml.safe_dump(
        hot.template(
            {},
            parameters={
                "size": {"type": "number", "constraints": [{"range": {"max": 5}}]},
                "secret": {
                    "type": "string",
                    "hidden": True,
                    "default": "long enough",
                    "constraints": [{"length": {"min": 4}}],
                },
            },
        )
    )
    message = refused(
        parent({"db": {"type": "db.yaml", "properties": {"size": 9, "secret": "abc"}}}),
        {"db.yaml": child},
    )
    assert (
        "resources.db.properties.size: range: 9 is out of range (min: None, max: 5) "
        "(parameter 'size' of template 'db.yaml')"
    ) in message
    assert "resources.db.properties.secret: length: the length of ******" in message
    assert "abc" not in message, "a hidden parameter's value is never shown"
    # A value that comes from another resource is the child's to check.
    sim = created(
        parent(
            {
                "n": {"type": "OS::Heat::Value", "properties": {"value": 3}},
                "db": {"type": "db.yaml", "properties": {"size": {"get_attr": ["n", "value"]}}},
            }
        ),
        {"db.yaml": child},
    )
    assert record(sim, "db").status == "COMPLETE"


def test_an_attribute_that_is_no_output_of_the_child_is_refused() -> None:
    message = refused(
        parent(
            {"web": {"type": "server.yaml", "properties": {"word": "x"}}},
            x={"get_attr": ["web", "sayd"]},
        ),
        {"server.yaml": SERVER},
    )
    assert "outputs.x.value: get_attr: unknown attribute 'sayd' of resource 'web'" in message


def test_errors_deep_in_the_tree_say_in_which_file() -> None:
    broken = yaml.safe_dump(hot.template({"r": {"type": "No::Such"}}))
    middle = yaml.safe_dump(hot.template({"m": {"type": "broken.yaml"}}))
    message = refused(
        parent({"top": {"type": "middle.yaml"}}),
        {"middle.yaml": middle, "broken.yaml": broken},
    )
    assert message == (
        "resources.top.type: in template 'middle.yaml': resources.m.type: in template "
        "'broken.yaml': resources.r.type: unknown resource type 'No::Such'"
    )


def test_an_invalid_template_file_is_refused_naming_it() -> None:
    message = refused(
        parent({"web": {"type": "server.yaml"}}), {"server.yaml": "heat_template_version: 1"}
    )
    assert message.startswith("resources.web.type: template 'server.yaml': "), message
    assert "heat_template_version" in message


def test_the_type_that_runs_template_resources_is_named_by_no_template() -> None:
    message = refused(parent({"web": {"type": "Convergence::TemplateResource"}}), {})
    assert "write the template's file name as the type" in message


def test_per_resource_overrides_reach_into_the_child_by_resource_name() -> None:
    # resources: {web: {box: {...}}} maps `box` of web's child, and nothing else.
    environment = {
        "resource_registry": {
            "resources": {"web": {"box": {"OS::Heat::TestResource": "OS::Heat::None"}}}
        }
    }
    sim = created(
        parent(
            {
                "web": {"type": "server.yaml", "properties": {"word": "w"}},
                "other": {"type": "server.yaml", "properties": {"word": "o"}},
            }
        ),
        {"server.yaml": SERVER},
        environment=environment,
    )
    assert record(sim, "box", record(sim, "web").resource_id).type == "OS::Heat::None"
    assert record(sim, "box", record(sim, "other").resource_id).type == "OS::Heat::TestResource"


def test_preview_says_a_new_file_content_updates_and_another_file_replaces() -> None:
    template = parent({"web": {"type": "server.yaml", "properties": {"word": "a"}}})
    sim = created(template, {"server.yaml": SERVER})
    same = preview.preview_update(sim.engine, "p", template, files={"server.yaml": SERVER})
    assert [c.name for c in same.unchanged] == ["web"], same
    louder = preview.preview_update(sim.engine, "p", template, files={"server.yaml": server("?")})
    (updated,) = louder.updated
    assert (updated.name, updated.type, updated.properties) == (
        "web",
        "server.yaml",
        ("files", "template"),
    )
    template["resources"]["web"]["type"] = "other.yaml"
    moved = preview.preview_update(sim.engine, "p", template, files={"other.yaml": SERVER})
    (replaced,) = moved.replaced
    assert replaced.reason == "its type changes from server.yaml to other.yaml", replaced


def test_a_resource_group_of_template_members_gives_its_child_the_files_and_registry() -> None:
    # Heat's most common shape: a group whose members are a template (here through an alias).
    sim = created(
        parent(
            {
                "group": {
                    "type": "OS::Heat::ResourceGroup",
                    "properties": {
                        "count": 2,
                        "resource_def": {"type": "My::Server", "properties": {"word": "m%index%"}},
                    },
                }
            },
            said={"get_attr": ["group", "said"]},
        ),
        {"server.yaml": SERVER},
        environment={"resource_registry": {"My::Server": "server.yaml"}},
    )
    assert sim.stack("p").outputs == {"said": ["m0!", "m1!"]}
    members = record(sim, "group").resource_id
    assert {r.type for r in sim.resources(members)} == {"server.yaml"}


def test_an_inline_nested_stack_reads_the_parents_files() -> None:
    child = "heat_template_version: 2021-04-16\noutputs: {motd: {value: {get_file: motd.txt}}}\n"
    sim = created(
        parent(
            {"db": {"type": "OS::Heat::Stack", "properties": {"template": child}}},
            motd={"get_attr": ["db", "outputs", "motd"]},
        ),
        {"motd.txt": "hello\n"},
    )
    assert sim.stack("p").outputs == {"motd": "hello\n"}


def test_a_template_holding_a_group_of_templates_reaches_the_files_two_levels_down() -> None:
    # The child gets the whole files map: what a group inside it makes is known only then.
    tier = yaml.safe_dump(
        hot.template(
            {
                "group": {
                    "type": "OS::Heat::ResourceGroup",
                    "properties": {
                        "count": 2,
                        "resource_def": {"type": "server.yaml", "properties": {"word": "s"}},
                    },
                }
            },
            outputs={"said": {"value": {"get_attr": ["group", "said"]}}},
        )
    )
    sim = created(
        parent({"tier": {"type": "tier.yaml"}}, said={"get_attr": ["tier", "said"]}),
        {"tier.yaml": tier, "server.yaml": SERVER},
    )
    assert sim.stack("p").outputs == {"said": ["s!", "s!"]}
