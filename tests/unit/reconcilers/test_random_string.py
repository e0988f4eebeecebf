"""OS::Heat::RandomString on the simulator: Heat's rules, and the string kept out of status."""

from __future__ import annotations

import string
from typing import Any

import pytest

from convergence.operator.engine.plugin import (
    ResourceContext,
    ResourceFailure,
    StackRef,
    secret_token,
)
from convergence.operator.engine.sim.simulator import (
    InMemoryReality,
    InMemorySecretStore,
    Simulator,
    VirtualClock,
)
from convergence.operator.testing import hot
from convergence.reconcilers.random_string import (
    RandomString,
    RandomStringProperties,
    generate,
)


def random_string(**properties: Any) -> dict[str, Any]:
    return {"type": "OS::Heat::RandomString", "properties": properties}


def record_of(sim: Simulator, name: str, stack: str = "s") -> Any:
    live = [r for r in sim.resources(stack) if r.name == name]
    return max(live, key=lambda r: (r.created_at, r.id))


def the_string(sim: Simulator, name: str = "pw", stack: str = "s") -> str:
    entry = sim.secrets.read(record_of(sim, name, stack).resource_id)
    assert entry is not None, f"no secret entry for {name}"
    return entry.data["value"]


def everything_stored(sim: Simulator, stack: str = "s") -> str:
    """The text of every record, sync point, output and trace line the engine wrote."""
    parts = [repr(sim.stack(stack)), repr(sim.memory.stack_sync_point(stack))]
    for record in sim.resources(stack):
        parts.append(repr(record))
        for is_update in (True, False):
            parts.append(repr(sim.memory.sync_point(record.id, is_update)))
    parts.extend(str(report) for report in sim.trace)
    return "\n".join(parts)


def converge(sim: Simulator, template: dict[str, Any], *, update: bool = False) -> None:
    if update:
        sim.update("s", template)
    else:
        sim.create("s", template)
    sim.run_until_quiet()


def test_default_string_is_32_letters_and_digits_kept_in_the_secret_store() -> None:
    sim = Simulator()
    converge(sim, hot.template({"pw": random_string()}))
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    value = the_string(sim)
    assert len(value) == 32
    assert set(value) <= set(string.ascii_letters + string.digits)
    record = record_of(sim, "pw")
    assert record.resource_id == f"s-pw-{record.resource_id.rsplit('-', 1)[1]}"
    assert sim.secrets.owners[record.resource_id] == record.id, "the entry names its record"
    assert record.reference_id == secret_token(record.resource_id, "value")


def test_minimums_of_classes_and_sequences_are_met_and_nothing_else_is_used() -> None:
    properties = RandomStringProperties.model_validate(
        {
            "length": 12,
            "character_classes": [{"class": "digits", "min": 3}, {"class": "uppercase"}],
            "character_sequences": [{"sequence": "!@#", "min": 4}],
        }
    )
    allowed = set(string.digits + string.ascii_uppercase + "!@#")
    for _ in range(50):
        value = generate(properties)
        assert len(value) == 12
        assert set(value) <= allowed, value
        assert sum(c in string.digits for c in value) >= 3, value
        assert sum(c in string.ascii_uppercase for c in value) >= 1, value
        assert sum(c in "!@#" for c in value) >= 4, value


def test_heat_class_definitions_hexdigits_uppercase_and_octdigits() -> None:
    for class_name, allowed in (("hexdigits", "0123456789ABCDEF"), ("octdigits", "01234567")):
        properties = RandomStringProperties.model_validate(
            {"length": 64, "character_classes": [{"class": class_name}]}
        )
        assert set(generate(properties)) <= set(allowed), class_name


def test_deprecated_sequence_property_picks_the_class() -> None:
    properties = RandomStringProperties.model_validate({"length": 40, "sequence": "digits"})
    assert set(generate(properties)) <= set(string.digits)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"length": 0}, "length"),
        ({"length": 513}, "length"),
        ({"character_classes": [{"class": "symbols"}]}, "character_classes"),
        ({"character_classes": [{"class": "digits", "min": 0}]}, "character_classes"),
        ({"character_sequences": [{"min": 2}]}, "sequence"),
        (
            {
                "length": 4,
                "character_classes": [{"min": 3}],
                "character_sequences": [{"sequence": "ab", "min": 2}],
            },
            "cannot be smaller than combined character class and character sequence minimums",
        ),
        ({"sequence": "digits", "character_classes": [{"class": "letters"}]}, "deprecated"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_properties_fail_the_resource_with_a_clear_reason(
    properties: dict[str, Any], message: str
) -> None:
    sim = Simulator()
    converge(sim, hot.template({"pw": random_string(**properties)}))
    assert sim.stack("s").phase == "CREATE_FAILED"
    reason = record_of(sim, "pw").status_reason
    assert reason.startswith("Property error"), reason
    assert message in reason, reason
    assert sim.secrets.entries == {}, "nothing may be stored for an invalid resource"


def test_dependents_get_the_string_while_status_sync_points_and_outputs_hold_a_reference() -> None:
    sim = Simulator()
    converge(
        sim,
        hot.template(
            {
                "pw": random_string(length=24),
                "copy": {
                    "type": "OS::Heat::Value",
                    "properties": {"value": {"get_attr": ["pw", "value"]}},
                },
                "conf": {
                    "type": "OS::Heat::TestResource",
                    "properties": {"value": {"list_join": [":", ["user", {"get_resource": "pw"}]]}},
                },
            },
            outputs={
                "password": {"value": {"get_attr": ["copy", "value"]}},
                "secret": {"value": {"get_attr": ["pw", "secret_name"]}},
            },
        ),
    )
    assert sim.stack("s").phase == "CREATE_COMPLETE"
    value = the_string(sim)
    (conf,) = sim.copies("s", "conf")
    assert conf.properties == {"value": f"user:{value}"}, "the dependent must get the string"
    pw = record_of(sim, "pw")
    token = secret_token(pw.resource_id, "value")
    assert sim.stack("s").outputs == {"password": token, "secret": pw.resource_id}
    assert record_of(sim, "copy").attributes == {"value": token}
    assert record_of(sim, "conf").properties == {"value": f"user:{token}"}
    stored = everything_stored(sim).replace(repr(dict(record_of(sim, "conf").data)), "")
    assert value not in stored, "the string leaked into status, a sync point or a trace"


def test_a_failure_reason_never_shows_the_string() -> None:
    sim = Simulator()
    converge(
        sim,
        hot.template(
            {
                "pw": random_string(character_classes=[{"class": "letters"}]),
                "n": {
                    "type": "OS::Heat::Value",
                    "properties": {"value": {"get_attr": ["pw", "value"]}, "type": "number"},
                },
            }
        ),
    )
    assert sim.stack("s").phase == "CREATE_FAILED"
    value = the_string(sim)
    reason = record_of(sim, "n").status_reason
    assert "not a valid number" in reason, reason
    assert value not in reason
    assert value not in sim.stack("s").status_reason
    assert secret_token(record_of(sim, "pw").resource_id, "value") in reason


def test_salt_change_replaces_and_the_old_string_is_deleted_after_dependents_moved() -> None:
    sim = Simulator()
    consumer = {"type": "OS::Heat::TestResource", "properties": {"value": {"get_resource": "pw"}}}
    converge(sim, hot.template({"pw": random_string(salt="1"), "conf": consumer}))
    old_record = record_of(sim, "pw")
    old_value = the_string(sim)
    converge(sim, hot.template({"pw": random_string(salt="2"), "conf": consumer}), update=True)
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    new_record = record_of(sim, "pw")
    assert new_record.id != old_record.id
    assert new_record.replaces == old_record.id
    assert the_string(sim) != old_value
    assert list(sim.secrets.entries) == [new_record.resource_id], "the old entry must be gone"
    (conf,) = sim.copies("s", "conf")
    assert conf.properties == {"value": the_string(sim)}


def test_any_property_change_replaces() -> None:
    sim = Simulator()
    converge(sim, hot.template({"pw": random_string(length=8)}))
    first = record_of(sim, "pw").id
    converge(sim, hot.template({"pw": random_string(length=9)}), update=True)
    assert record_of(sim, "pw").id != first
    assert len(the_string(sim)) == 9


def test_unchanged_properties_keep_the_string() -> None:
    sim = Simulator()
    converge(sim, hot.template({"pw": random_string(salt="x")}))
    value = the_string(sim)
    converge(
        sim,
        hot.template({"pw": random_string(salt="x"), "other": {"type": "OS::Heat::None"}}),
        update=True,
    )
    assert the_string(sim) == value


def test_stack_delete_deletes_the_entry_and_retain_releases_it() -> None:
    sim = Simulator()
    converge(sim, hot.template({"pw": random_string()}))
    sim.delete("s")
    sim.run_until_quiet()
    assert sim.secrets.entries == {}

    sim = Simulator()
    converge(sim, hot.template({"pw": {**random_string(), "deletion_policy": "Retain"}}))
    name = record_of(sim, "pw").resource_id
    sim.delete("s")
    sim.run_until_quiet()
    assert sim.stack("s").phase == "DELETE_COMPLETE"
    assert name in sim.secrets.entries
    assert name in sim.secrets.released
    assert name not in sim.secrets.owners, "a retained entry must not stay owned by its record"


def test_a_handmade_reference_to_another_stacks_secret_is_refused() -> None:
    sim = Simulator()
    sim.create("other", hot.template({"pw": random_string()}))
    sim.run_until_quiet()
    victim = record_of(sim, "pw", "other")
    token = secret_token(victim.resource_id, "value")
    sim.create(
        "s",
        hot.template({"spy": {"type": "OS::Heat::TestResource", "properties": {"value": token}}}),
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_FAILED"
    assert "does not exist in stack 's'" in record_of(sim, "spy").status_reason
    assert sim.copies("s", "spy") == []


def test_create_retried_after_a_crash_keeps_the_string_it_stored() -> None:
    secrets = InMemorySecretStore()
    properties = RandomStringProperties()

    def context() -> ResourceContext:
        return ResourceContext(
            stack=StackRef("s", "id"),
            name="pw",
            record_id="8a0c6c3e-4a5c-4a8e-9d2b-4c1b7d9e0f11",
            clock=VirtualClock(),
            reality=InMemoryReality(),
            secrets=secrets,
        )

    RandomString(context(), properties).create()
    (first,) = [entry.data["value"] for entry in secrets.entries.values()]
    retried = context()
    RandomString(retried, properties).create()
    assert [entry.data["value"] for entry in secrets.entries.values()] == [first]
    assert retried.resource_id in secrets.entries


def test_without_a_secret_store_create_fails_clearly() -> None:
    context = ResourceContext(
        stack=StackRef("s", "id"),
        name="pw",
        record_id="8a0c6c3e-4a5c-4a8e-9d2b-4c1b7d9e0f11",
        clock=VirtualClock(),
        reality=InMemoryReality(),
    )
    with pytest.raises(ResourceFailure, match="needs a secret store"):
        RandomString(context, RandomStringProperties()).create()
