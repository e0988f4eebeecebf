"""The Stack's environment: parameters, parameter_defaults and resource_registry (aliases,
templates, per-resource overrides, the child environment), kept per revision."""

from __future__ import annotations

from typing import Any

import pytest

from convergence.operator.engine.hot.environment import Environment
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.sim.simulator import Simulator
from convergence.operator.testing import hot

ALIASES = {"My::TestResource": "OS::Heat::TestResource", "OS::Nova::Server": "OS::Heat::None"}


def record_of(sim: Simulator, name: str) -> Any:
    live = [r for r in sim.resources("s") if r.name == name]
    return max(live, key=lambda r: (r.created_at, r.id))


def test_aliases_resolve_to_registered_types_and_stub_out_with_none() -> None:
    sim = Simulator()
    sim.create(
        "s",
        hot.template(
            {
                "a": {"type": "My::TestResource", "properties": {"value": "x"}},
                "server": {"type": "OS::Nova::Server", "properties": {"flavor": "m1.small"}},
            }
        ),
        environment={"resource_registry": ALIASES},
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE", sim.stack("s").status_reason
    assert record_of(sim, "a").type == "OS::Heat::TestResource"
    assert record_of(sim, "server").type == "OS::Heat::None"
    assert [c.properties for c in sim.copies("s", "a")] == [{"value": "x"}]
    assert sim.copies("s", "server") == [], "a type stubbed out by OS::Heat::None makes nothing"


def test_an_alias_to_an_unknown_type_is_refused_naming_the_alias_and_stores_nothing() -> None:
    sim = Simulator()
    with pytest.raises(TemplateError) as error:
        sim.create(
            "s",
            hot.template({"a": {"type": "My::Thing"}}),
            environment={"resource_registry": {"My::Thing": "OS::Heat::Nope"}},
        )
    assert "'OS::Heat::Nope'" in str(error.value)
    assert "'My::Thing'" in str(error.value)
    assert "resource_registry" in str(error.value)
    assert sim.memory.get_stack("s") is None


def test_an_unknown_type_without_an_alias_is_still_an_error() -> None:
    sim = Simulator()
    with pytest.raises(TemplateError, match="unknown resource type 'My::Thing'"):
        sim.create("s", hot.template({"a": {"type": "My::Thing"}}))


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"resource_registry": {"A": {"hooks": "pre-create"}}}, "expected a resource type name"),
        ({"resource_registry": ["A"]}, "expected a map"),
        (
            {"event_sinks": []},
            "environment.event_sinks: event_sinks is not supported by Convergence",
        ),
        (
            {"encrypted_param_names": ["pw"]},
            "environment.encrypted_param_names: encrypted_param_names is not supported",
        ),
        (
            {"parameter_merge_strategies": {}},
            "environment.parameter_merge_strategies: parameter_merge_strategies is not supported",
        ),
        ({"flavor": "m1.small"}, "environment.flavor: unsupported section"),
        ({"parameter_defaults": "x"}, "expected a map"),
        ({"parameters": ["x"]}, "environment.parameters: expected a map"),
        (
            {"resource_registry": {"resources": {"a": {"hooks": "pre-create"}}}},
            "environment.resource_registry.resources.a.hooks: hooks: breakpoints are not supported",
        ),
        (
            {"resource_registry": {"resources": {"a": {"restricted_actions": "replace"}}}},
            "resources.a.restricted_actions: restricted_actions: restricted actions are not",
        ),
        (
            {"resource_registry": {"resources": {"a": {"My::T": 3}}}},
            "resources.a.My::T: expected a resource type name or a template file",
        ),
    ],
)
def test_an_environment_we_cannot_honour_is_refused(
    environment: dict[str, Any], message: str
) -> None:
    sim = Simulator()
    with pytest.raises(TemplateError) as error:
        sim.create("s", hot.template({"a": {"type": "OS::Heat::None"}}), environment=environment)
    assert message in str(error.value)


def test_changing_an_alias_target_replaces_and_rollback_uses_the_old_environment() -> None:
    sim = Simulator()
    template = hot.template({"a": {"type": "My::Type", "properties": {"value": "x"}}})
    sim.create(
        "s", template, environment={"resource_registry": {"My::Type": "OS::Heat::TestResource"}}
    )
    sim.run_until_quiet()
    first = record_of(sim, "a")
    sim.update("s", template, environment={"resource_registry": {"My::Type": "OS::Heat::None"}})
    sim.run_until_quiet()
    assert sim.stack("s").phase == "UPDATE_COMPLETE"
    second = record_of(sim, "a")
    assert second.id != first.id
    assert second.type == "OS::Heat::None"
    assert sim.copies("s", "a") == [], "the TestResource must be cleaned up"

    # A failed update rolls back to the revision before it, environment included.
    failing = hot.template(
        {
            "a": {"type": "My::Type", "properties": {"value": "x"}},
            "b": {
                "type": "OS::Heat::TestResource",
                "properties": {"fail": True},
                "depends_on": ["a"],
            },
        }
    )
    sim.update(
        "s",
        failing,
        environment={"resource_registry": {"My::Type": "OS::Heat::TestResource"}},
        disable_rollback=False,
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "ROLLBACK_COMPLETE", sim.stack("s").status_reason
    assert record_of(sim, "a").type == "OS::Heat::None"
    assert sim.copies("s", "a") == []
    assert sim.copies("s", "b") == []


def test_parameter_defaults_fill_declared_parameters_and_given_values_win() -> None:
    template = hot.template(
        {
            "r": {
                "type": "OS::Heat::TestResource",
                "properties": {
                    "value": {
                        "list_join": [" ", [{"get_param": "greeting"}, {"get_param": "name"}]]
                    }
                },
            }
        },
        parameters={"greeting": {"type": "string"}, "name": {"type": "string", "default": "a"}},
    )
    sim = Simulator()
    sim.create(
        "s",
        template,
        {"name": "bob"},
        environment={"parameter_defaults": {"greeting": "hi", "name": "eve", "unused": 1}},
    )
    sim.run_until_quiet()
    assert sim.stack("s").phase == "CREATE_COMPLETE", sim.stack("s").status_reason
    assert [c.properties for c in sim.copies("s", "r")] == [{"value": "hi bob"}]


def test_a_childs_environment_is_heats_child_environment() -> None:
    environment = Environment.parse(
        {
            "parameters": {"flavor": "big"},
            "parameter_defaults": {"size": 3},
            "resource_registry": {
                "My::Server": "server.yaml",
                "My::Alias": "OS::Heat::None",
                "resources": {
                    "web": {"My::Server": "web.yaml", "box": {"OS::Heat::TestResource": "X"}},
                    "w*": {"disk": {"OS::Heat::TestResource": "Y"}},
                },
            },
        }
    )
    mapped = environment.resolve("My::Server", "db")
    assert (mapped.type, mapped.mapped_from, mapped.per_resource) == (
        "server.yaml",
        "My::Server",
        False,
    )
    own = environment.resolve("My::Server", "web")
    assert (own.type, own.per_resource) == ("web.yaml", True)

    # The entry that made db a template is not in db's child; values are not passed down.
    assert environment.child("db", mapped).as_dict() == {
        "resource_registry": {"My::Alias": "OS::Heat::None"},
        "parameter_defaults": {"size": 3},
    }
    # web's child keeps the global entries, and gets the overrides of its own resources
    # (by web's name and by a matching pattern), not web's own type mapping.
    assert environment.child("web", own).as_dict()["resource_registry"] == {
        "My::Server": "server.yaml",
        "My::Alias": "OS::Heat::None",
        "resources": {
            "box": {"OS::Heat::TestResource": "X"},
            "disk": {"OS::Heat::TestResource": "Y"},
        },
    }


def test_globs_and_chains_resolve_as_in_heat() -> None:
    environment = Environment.parse(
        {"resource_registry": {"OS::Nova::*": "My::*", "My::Server": "server.yaml"}}
    )
    resolution = environment.resolve("OS::Nova::Server", "vm")
    assert (resolution.type, resolution.mapped_from) == ("server.yaml", "My::Server")
    assert environment.resolve("OS::Nova::Volume").type == "My::Volume"
    assert environment.resolve("OS::Heat::None").type == "OS::Heat::None"
