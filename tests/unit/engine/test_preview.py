"""Preview of a create, update or delete on the in-memory store: Heat's preview_update cases,
what counts as a change, unknown values, and agreement with what the update then does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.operations import OperationRefused
from convergence.operator.engine.outcome import ActionResult, Outcome
from convergence.operator.engine.preview import (
    CATEGORIES,
    Preview,
    PropertiesInvalid,
    preview_create,
    preview_delete,
    preview_update,
)
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.engine.store import UPDATE
from convergence.operator.testing import hot

TYPE = "OS::Heat::TestResource"

# Heat's functional tests' templates: one and two test resources.
ONE = hot.template(hot.resources(TYPE, test1={"properties": {"value": "Test1"}}))
TWO = hot.template(
    hot.resources(
        TYPE, test1={"properties": {"value": "Test1"}}, test2={"properties": {"value": "Test1"}}
    )
)


def created(template: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> Simulator:
    sim = Simulator()
    sim.create("s", template, parameters)
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    return sim


def lists(preview: Preview) -> dict[str, list[str]]:
    """The non-empty lists by name."""
    return {category: names for category, names in preview.names().items() if names}


def observed(sim: Simulator, update: Any) -> dict[str, list[str]]:
    """What an update really did to each logical resource, in the preview's five lists."""
    before = {r.name: r.id for r in sim.resources("s")}
    writes = len(sim.trace)
    update()
    sim.run_until_quiet()
    assert sim.stack("s").status == "COMPLETE", sim.stack("s").status_reason
    after = {r.name: r for r in sim.resources("s")}
    updated_ids = {
        report.message.node.record_id
        for report in sim.trace[writes:]
        if report.outcome.action is not None
        and report.outcome.action.name == UPDATE
        and report.outcome.action.result is ActionResult.COMPLETE
    }
    unchanged_ids = {
        report.message.node.record_id
        for report in sim.trace[writes:]
        if report.outcome.kind is Outcome.UNCHANGED
    }
    result: dict[str, list[str]] = {category: [] for category in CATEGORIES}
    for name in sorted(set(before) | set(after)):
        if name not in before:
            result["added"].append(name)
        elif name not in after:
            result["deleted"].append(name)
        elif after[name].id != before[name]:
            assert after[name].replaces == before[name]
            result["replaced"].append(name)
        elif before[name] in updated_ids:
            result["updated"].append(name)
        else:
            assert before[name] in unchanged_ids, f"{name}: neither updated nor unchanged"
            result["unchanged"].append(name)
    return {category: names for category, names in result.items() if names}


# -- Heat's preview_update functional cases ------------------------------------------------------


def test_adding_a_resource_previews_it_added_and_the_other_unchanged() -> None:
    sim = created(ONE)
    assert lists(preview_update(sim.engine, "s", TWO)) == {
        "added": ["test2"],
        "unchanged": ["test1"],
    }


def test_the_same_template_previews_everything_unchanged() -> None:
    sim = created(ONE)
    assert lists(preview_update(sim.engine, "s", ONE)) == {"unchanged": ["test1"]}


def test_a_changed_update_allowed_property_previews_an_update_naming_it() -> None:
    sim = created(ONE)
    changed = hot.template(hot.resources(TYPE, test1={"properties": {"value": "Test1 foo"}}))
    preview = preview_update(sim.engine, "s", changed)
    assert lists(preview) == {"updated": ["test1"]}
    assert preview.updated[0].properties == ("value",)


def test_update_replace_previews_a_replacement_with_its_reason() -> None:
    sim = created(ONE)
    replacing = hot.template(hot.resources(TYPE, test1={"properties": {"update_replace": True}}))
    preview = preview_update(sim.engine, "s", replacing)
    assert lists(preview) == {"replaced": ["test1"]}
    change = preview.replaced[0]
    assert change.properties == ("update_replace", "value")
    assert change.forced_by == ()
    assert change.reason == f"{TYPE} replaces it on a change of update_replace, value", (
        change.reason
    )


def test_removing_a_resource_previews_it_deleted() -> None:
    sim = created(TWO)
    assert lists(preview_update(sim.engine, "s", ONE)) == {
        "deleted": ["test2"],
        "unchanged": ["test1"],
    }


# -- what counts as a change ---------------------------------------------------------------------


def test_a_property_that_cannot_change_in_place_is_named_as_forcing_the_replacement() -> None:
    sim = created(
        hot.template(hot.resources(TYPE, a={"properties": {"update_replace_value": "x"}}))
    )
    preview = preview_update(
        sim.engine,
        "s",
        hot.template(
            hot.resources(TYPE, a={"properties": {"update_replace_value": "y", "value": "v"}})
        ),
    )
    assert lists(preview) == {"replaced": ["a"]}
    assert preview.replaced[0].forced_by == ("update_replace_value",)
    assert preview.replaced[0].properties == ("update_replace_value", "value")


def test_a_parameter_change_counts_only_where_it_reaches_a_property() -> None:
    template = hot.template(
        hot.resources(
            TYPE,
            uses={"properties": {"value": {"get_param": "word"}}},
            ignores={"properties": {"value": "fixed"}},
        ),
        parameters={"word": {"type": "string"}, "unused": {"type": "string", "default": "u"}},
    )
    sim = created(template, {"word": "one"})
    preview = preview_update(sim.engine, "s", template, {"word": "two", "unused": "v"})
    assert lists(preview) == {"updated": ["uses"], "unchanged": ["ignores"]}


def test_a_changed_depends_on_alone_is_unchanged() -> None:
    sim = created(hot.template(hot.resources(TYPE, a={}, b={})))
    reordered = hot.template(hot.resources(TYPE, a={"depends_on": ["b"]}, b={}))
    assert lists(preview_update(sim.engine, "s", reordered)) == {"unchanged": ["a", "b"]}


def test_a_value_written_out_as_its_default_is_unchanged() -> None:
    sim = created(hot.template(hot.resources(TYPE, a={})))
    explicit = hot.template(hot.resources(TYPE, a={"properties": {"value": "test_string"}}))
    assert lists(preview_update(sim.engine, "s", explicit)) == {"unchanged": ["a"]}


def test_a_type_change_is_a_replacement() -> None:
    sim = created(hot.template(hot.resources(TYPE, a={})))
    preview = preview_update(sim.engine, "s", hot.template(hot.resources("OS::Heat::None", a={})))
    assert lists(preview) == {"replaced": ["a"]}
    assert preview.replaced[0].type == "OS::Heat::None"
    assert "type changes from OS::Heat::TestResource" in preview.replaced[0].reason


def test_a_failed_resource_is_replaced_even_without_a_change() -> None:
    sim = Simulator()
    failing = hot.template(hot.resources(TYPE, a={"properties": {"fail": True}}))
    sim.create("s", failing)
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_FAILED"
    preview = preview_update(sim.engine, "s", failing)
    assert lists(preview) == {"replaced": ["a"]}
    assert preview.replaced[0].reason == "it is CREATE_FAILED"


def test_a_failed_nested_stack_is_updated_in_place_even_without_a_change() -> None:
    sim = Simulator()
    child = (
        "heat_template_version: 2021-04-16\nresources: {t: {type: %s, properties: {fail: true}}}\n"
    )
    failing = hot.template(
        {"db": {"type": "OS::Heat::Stack", "properties": {"template": child % TYPE}}}
    )
    sim.create("s", failing)
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_FAILED"
    [before] = sim.resources("s")
    preview = preview_update(sim.engine, "s", failing)
    assert lists(preview) == {"updated": ["db"]}
    assert "updates it in place" in preview.updated[0].reason
    sim.update("s", failing)
    sim.run_until_quiet()
    [after] = sim.resources("s")
    assert (after.id, after.phase) == (before.id, "UPDATE_FAILED"), "the update did not agree"


# -- values not known yet ------------------------------------------------------------------------


def chain(value: str, consumer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`source` (replaced when its value changes) feeding `consumer`'s value."""
    return hot.template(
        hot.resources(
            TYPE,
            source={"properties": {"value": value, "update_replace": True}},
            consumer=consumer or {"properties": {"value": {"get_attr": ["source", "output"]}}},
        )
    )


def test_get_attr_of_a_resource_left_unchanged_is_known() -> None:
    sim = created(chain("a"))
    assert lists(preview_update(sim.engine, "s", chain("a"))) == {
        "unchanged": ["consumer", "source"]
    }


def test_get_attr_of_a_replaced_resource_is_unknown_and_counts_as_changed() -> None:
    sim = created(chain("a"))
    preview = preview_update(sim.engine, "s", chain("b"))
    assert lists(preview) == {"replaced": ["source"], "updated": ["consumer"]}
    assert preview.updated[0].unknown == ("value",)
    assert preview.updated[0].properties == ("value",)


def test_an_unknown_property_that_cannot_change_in_place_previews_a_replacement() -> None:
    consumer = {"properties": {"update_replace_value": {"get_attr": ["source", "output"]}}}
    sim = created(chain("a", consumer))
    preview = preview_update(sim.engine, "s", chain("b", consumer))
    assert lists(preview) == {"replaced": ["consumer", "source"]}
    by_name = {change.name: change for change in preview.replaced}
    assert by_name["consumer"].unknown == ("update_replace_value",)
    assert by_name["consumer"].forced_by == ("update_replace_value",)


def test_get_resource_of_a_resource_updated_in_place_is_known() -> None:
    def template(value: str) -> dict[str, Any]:
        return hot.template(
            hot.resources(
                TYPE,
                source={"properties": {"value": value}},
                consumer={"properties": {"value": {"get_resource": "source"}}},
            )
        )

    sim = created(template("a"))
    preview = preview_update(sim.engine, "s", template("b"))
    assert lists(preview) == {"updated": ["source"], "unchanged": ["consumer"]}


def test_an_attribute_never_read_before_is_unknown() -> None:
    sim = created(hot.template(hot.resources(TYPE, source={}, consumer={})))
    reading = hot.template(
        hot.resources(
            TYPE,
            source={},
            consumer={"properties": {"value": {"get_attr": ["source", "output"]}}},
        )
    )
    preview = preview_update(sim.engine, "s", reading)
    assert lists(preview) == {"updated": ["consumer"], "unchanged": ["source"]}
    assert preview.updated[0].unknown == ("value",)


# -- create, delete, refusals, and no writes -----------------------------------------------------


def test_preview_of_a_create_adds_everything() -> None:
    sim = Simulator()
    preview = preview_create(sim.engine, "new", TWO)
    assert lists(preview) == {"added": ["test1", "test2"]}
    assert preview_update(sim.engine, "new", TWO) == preview, "no stack: an update is a create"
    assert sim.memory.get_stack("new") is None


def test_preview_of_a_delete_deletes_everything() -> None:
    sim = created(TWO)
    assert lists(preview_delete(sim.engine, "s")) == {"deleted": ["test1", "test2"]}
    assert lists(preview_delete(sim.engine, "missing")) == {}


def test_an_invalid_template_is_refused_with_the_engines_error() -> None:
    sim = created(ONE)
    bad = hot.template(hot.resources(TYPE, test1={"properties": {"value": {"get_param": "x"}}}))
    with pytest.raises(TemplateError, match="unknown parameter 'x'"):
        preview_update(sim.engine, "s", bad)


def test_changing_an_immutable_parameter_is_refused() -> None:
    template = hot.template(
        hot.resources(TYPE, a={"properties": {"value": {"get_param": "p"}}}),
        parameters={"p": {"type": "string", "immutable": True}},
    )
    sim = created(template, {"p": "one"})
    with pytest.raises(TemplateError, match="immutable"):
        preview_update(sim.engine, "s", template, {"p": "two"})


def test_properties_the_type_refuses_fail_the_preview_naming_the_resource() -> None:
    sim = created(ONE)
    bad = hot.template(hot.resources(TYPE, test1={"properties": {"wait_secs": "soon"}}))
    with pytest.raises(PropertiesInvalid, match=r"resources\.test1\.properties: .*wait_secs"):
        preview_update(sim.engine, "s", bad)
    with pytest.raises(PropertiesInvalid, match=r"resources\.test1\.properties"):
        preview_create(sim.engine, "other", bad)


def test_a_stack_being_deleted_refuses_the_preview_of_an_update() -> None:
    sim = created(ONE)
    sim.delete("s")
    with pytest.raises(OperationRefused, match="being deleted"):
        preview_update(sim.engine, "s", ONE)


def test_a_preview_writes_nothing() -> None:
    sim = created(chain("a"))
    writes = sim.memory.total_writes
    preview_update(sim.engine, "s", chain("b"))
    preview_create(sim.engine, "t", TWO)
    preview_delete(sim.engine, "s")
    assert sim.memory.total_writes == writes
    assert sim.step() is None, "a preview must trigger no step"


# -- preview and reality agree -------------------------------------------------------------------

AGREEMENT = {
    "add": (ONE, TWO),
    "no change": (ONE, ONE),
    "update in place": (
        ONE,
        hot.template(hot.resources(TYPE, test1={"properties": {"value": "Test1 foo"}})),
    ),
    "replace": (
        ONE,
        hot.template(hot.resources(TYPE, test1={"properties": {"update_replace": True}})),
    ),
    "delete": (TWO, ONE),
    "type change": (ONE, hot.template(hot.resources("OS::Heat::None", test1={}))),
    "depends_on only": (
        TWO,
        hot.template(
            hot.resources(
                TYPE,
                test1={"properties": {"value": "Test1"}, "depends_on": ["test2"]},
                test2={"properties": {"value": "Test1"}},
            )
        ),
    ),
    "replacement feeding a dependent": (chain("a"), chain("b")),
    "replacement forced through a dependent": (
        chain("a", {"properties": {"update_replace_value": {"get_attr": ["source", "output"]}}}),
        chain("b", {"properties": {"update_replace_value": {"get_attr": ["source", "output"]}}}),
    ),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT))
def test_the_preview_matches_what_the_update_then_does(case: str) -> None:
    old, new = AGREEMENT[case]
    sim = created(old)
    previewed = lists(preview_update(sim.engine, "s", new))
    assert observed(sim, lambda: sim.update("s", new)) == previewed, case


def test_the_preview_of_a_delete_matches_what_the_delete_does() -> None:
    sim = created(TWO)
    previewed = lists(preview_delete(sim.engine, "s"))
    sim.delete("s")
    sim.run_until_quiet()
    assert sim.stack("s").phase == "DELETE_COMPLETE"
    assert sim.resources("s") == []
    assert previewed == {"deleted": ["test1", "test2"]}
