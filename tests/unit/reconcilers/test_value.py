"""OS::Heat::Value on the simulator: typed coercion, clear failures, updates in place."""

from __future__ import annotations

from typing import Any

import pytest

from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot


def value_template(value_properties: dict[str, Any], *, consumer: bool = True) -> dict[str, Any]:
    """An OS::Heat::Value `v` as output `value`, read by a TestResource `c` if `consumer`."""
    resources: dict[str, Any] = {"v": {"type": "OS::Heat::Value", "properties": value_properties}}
    if consumer:
        resources["c"] = {
            "type": "OS::Heat::TestResource",
            "properties": {
                "value": {
                    "str_replace": {
                        "template": "got $v",
                        "params": {"$v": {"get_attr": ["v", "value"]}},
                    }
                }
            },
        }
    return hot.template(resources, outputs={"value": {"value": {"get_attr": ["v", "value"]}}})


def record_of(sim: Simulator, name: str) -> Any:
    live = [r for r in sim.resources("s") if r.name == name]
    return max(live, key=lambda r: (r.created_at, r.id))


def created(properties: dict[str, Any], *, consumer: bool = False) -> Simulator:
    sim = Simulator()
    sim.create("s", value_template(properties, consumer=consumer))
    sim.run_until_quiet()
    return sim


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"value": "3"}, "3"),
        ({"value": {"a": [1, 2]}}, {"a": [1, 2]}),
        ({"value": 3, "type": "string"}, "3"),
        ({"value": "3", "type": "number"}, 3),
        ({"value": "2.5", "type": "number"}, 2.5),
        ({"value": "a,b", "type": "comma_delimited_list"}, ["a", "b"]),
        ({"value": ["a", 1], "type": "comma_delimited_list"}, ["a", "1"]),
        ({"value": '{"k": 1}', "type": "json"}, {"k": 1}),
        ({"value": {"k": 1}, "type": "json"}, {"k": 1}),
        ({"value": "yes", "type": "boolean"}, True),
        ({"value": "off", "type": "boolean"}, False),
    ],
)
def test_value_is_coerced_to_its_type_and_exposed_as_attribute(
    properties: dict[str, Any], expected: Any
) -> None:
    sim = created(properties)
    assert sim.stack("s").phase == "CREATE_COMPLETE", sim.stack("s").status_reason
    assert sim.stack("s").outputs == {"value": expected}
    assert record_of(sim, "v").attributes == {"value": expected}


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"value": "three", "type": "number"}, "value: not a valid number"),
        ({"value": "maybe", "type": "boolean"}, "value: not a valid boolean"),
        ({"value": "{not json", "type": "json"}, "value: not a valid json"),
        ({"value": {"a": 1}, "type": "string"}, "value: not a valid string"),
        ({"value": {"a": 1}, "type": "comma_delimited_list"}, "not a valid comma_delimited_list"),
        ({"value": 1, "type": "float"}, "type"),
        ({"type": "string"}, "value"),
        ({"value": None}, "value"),
    ],
)
def test_a_value_that_does_not_fit_fails_with_a_clear_reason(
    properties: dict[str, Any], message: str
) -> None:
    sim = created(properties)
    assert sim.stack("s").phase == "CREATE_FAILED"
    reason = record_of(sim, "v").status_reason
    assert reason.startswith("Property error"), reason
    assert message in reason, reason


def test_value_and_type_update_in_place_and_dependents_follow() -> None:
    sim = created({"value": "1"}, consumer=True)
    first = record_of(sim, "v").id
    assert sim.copies("s", "c")[0].properties == {"value": "got 1"}
    sim.update("s", value_template({"value": "2", "type": "number"}))
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    record = record_of(sim, "v")
    assert record.id == first, "a Value must update in place, not be replaced"
    assert record.phase == "UPDATE_COMPLETE"
    assert record.attributes == {"value": 2}
    assert sim.copies("s", "c")[0].properties == {"value": "got 2"}


def test_reference_id_is_the_physical_name() -> None:
    sim = Simulator()
    sim.create(
        "s",
        hot.template(
            {"v": {"type": "OS::Heat::Value", "properties": {"value": 1}}},
            outputs={"ref": {"value": {"get_resource": "v"}}},
        ),
    )
    sim.run_until_quiet()
    record = record_of(sim, "v")
    assert record.resource_id is not None
    assert record.resource_id.startswith("s-v-")
    assert sim.stack("s").outputs == {"ref": record.resource_id}
