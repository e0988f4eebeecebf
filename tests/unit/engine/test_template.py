"""HOT templates and stack definitions: sections, versions, resources, outputs, conditions,
dependencies, types, and resolution against the data pushed through sync points."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

import pytest

from convergence.operator.engine.hot.definition import (
    ALL_ATTRIBUTES,
    ResourceData,
    StackDefinition,
    StackIdentity,
)
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.template import HOT_VERSIONS, VERSION_NAMES, Template
from convergence.operator.testing import hot

IDENTITY = StackIdentity(name="shop", id="5e1f", project_id="tenant-1")


def define(
    source: str | dict[str, Any], parameters: dict[str, Any] | None = None, **kwargs: Any
) -> StackDefinition:
    return StackDefinition(Template.parse(source), parameters or {}, IDENTITY, **kwargs)


def parse_error(source: str | dict[str, Any]) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        Template.parse(source)
    return caught.value


def definition_error(
    source: str | dict[str, Any], parameters: dict[str, Any] | None = None, **kwargs: Any
) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        define(source, parameters, **kwargs).validate()
    return caught.value


def none(**extra: Any) -> dict[str, Any]:
    return {"type": "OS::Heat::None", **extra}


# -- versions and sections -----------------------------------------------------------------------


@pytest.mark.parametrize("version", HOT_VERSIONS)
def test_every_dated_version_parses_including_unquoted_yaml_dates(version: str) -> None:
    template = Template.parse(f"heat_template_version: {version}\n")
    assert template.version == version
    assert template.raw["heat_template_version"] == version, "the raw document stays JSON"
    json.dumps(template.raw)


@pytest.mark.parametrize(("name", "date"), sorted(VERSION_NAMES.items()))
def test_named_versions_mean_their_dates(name: str, date: str) -> None:
    assert Template.parse(f"heat_template_version: {name}\n").version == date


def test_unknown_or_missing_version_lists_the_known_ones() -> None:
    error = parse_error("heat_template_version: 2020-01-01\n")
    assert error.where == "heat_template_version", error
    assert "unknown version" in error.message, error
    assert "wallaby (2021-04-16)" in error.message, error
    assert "is required" in parse_error("resources: {}\n").message


def test_cfn_templates_are_rejected_clearly() -> None:
    error = parse_error('{"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}')
    assert "CFN-format templates are not supported by Convergence" in error.message, error


def test_unknown_section_is_an_error() -> None:
    error = parse_error(hot.template({}, mappings={}))
    assert error.where == "mappings", error
    assert "unknown template section" in error.message, error


def test_conditions_section_needs_2016_10_14() -> None:
    error = parse_error(hot.template({}, "2016-04-08", conditions={"c": True}))
    assert "conditions need heat_template_version 2016-10-14" in error.message, error


def test_yaml_syntax_error_is_a_template_error() -> None:
    error = parse_error("heat_template_version: 2021-04-16\nresources: [unclosed\n")
    assert error.where == "template", error
    assert "invalid YAML" in error.message, error


@pytest.mark.parametrize("source", ["", "- a list\n", "just text\n"])
def test_a_template_must_be_a_map(source: str) -> None:
    assert "expected a map of template sections" in parse_error(source).message


def test_yaml_boolean_keys_are_rejected_with_a_hint() -> None:
    source = (
        "heat_template_version: 2021-04-16\nresources:\n  a:\n    type: T\n    metadata: {on: 1}\n"
    )
    error = parse_error(source)
    assert error.where == "resources.a.metadata", error
    assert "quote it" in error.message, error


def test_numeric_yaml_keys_become_strings_as_in_json() -> None:
    template = Template.parse(
        "heat_template_version: 2021-04-16\n"
        "resources:\n  a:\n    type: T\n    metadata: {80: http}\n"
    )
    assert template.raw["resources"]["a"]["metadata"] == {"80": "http"}


def test_json_text_and_yaml_text_and_mappings_parse_alike() -> None:
    document = hot.template({"a": none(properties={"x": [1, {"get_resource": "b"}]}), "b": none()})
    from_json = Template.parse(json.dumps(document))
    from_yaml = Template.parse(
        "heat_template_version: 2021-04-16\n"
        "resources:\n"
        "  a: {type: OS::Heat::None, properties: {x: [1, {get_resource: b}]}}\n"
        "  b: {type: OS::Heat::None}\n"
    )
    assert from_json == from_yaml == Template.parse(document)


def test_parsing_the_same_text_again_reuses_the_template() -> None:
    text = "heat_template_version: 2021-04-16\nresources: {a: {type: T}}\n"
    assert Template.parse(text) is Template.parse(text)


def test_parsing_a_mapping_copies_it() -> None:
    document = hot.template({"a": none(properties={"v": [1]})})
    template = Template.parse(document)
    document["resources"]["a"]["properties"]["v"].append(2)
    assert template.raw["resources"]["a"]["properties"]["v"] == [1]


def test_empty_template_has_no_resources_or_outputs() -> None:
    definition = StackDefinition(Template.empty(), {}, IDENTITY)
    assert dict(definition.resources) == {}
    assert definition.resolve_outputs({}) == {}
    assert dict(definition.dependencies()) == {}


def test_description_and_parameter_groups_are_validated() -> None:
    template = Template.parse(
        hot.template(
            {},
            description="A shop",
            parameters={"size": {"type": "number", "default": 1}},
            parameter_groups=[{"label": "Sizing", "parameters": ["size"]}],
        )
    )
    assert template.description == "A shop"
    error = parse_error(hot.template({}, parameter_groups=[{"parameters": ["nothing"]}]))
    assert error.where == "parameter_groups[0].parameters", error
    assert "description" in parse_error(hot.template({}, description=["x"])).where


# -- resources -----------------------------------------------------------------------------------


def test_resource_definition_carries_type_policies_and_metadata() -> None:
    definition = define(
        hot.template(
            {
                "db": {
                    "type": "OS::Heat::TestResource",
                    "description": "the database",
                    "properties": {"value": "x"},
                    "metadata": {"role": "db"},
                    "deletion_policy": "retain",
                    "update_policy": {"batch": 1},
                }
            }
        )
    )
    db = definition.resources["db"]
    assert (db.name, db.type, db.properties, db.depends_on) == (
        "db",
        "OS::Heat::TestResource",
        {"value": "x"},
        (),
    )
    assert (db.deletion_policy, db.update_policy, db.metadata) == (
        "Retain",
        {"batch": 1},
        {"role": "db"},
    )


def test_what_binding_leaves_unchanged_is_kept_once_and_what_it_changes_is_a_copy() -> None:
    """A definition keeps every bound resource: snippets that neither parsing nor binding
    change are the template's own objects, not copies (a large stack's definition was
    about twice what it holds now); a parameter's value makes a copy, and leaves the
    template as it was."""
    template = hot.template(
        {
            "db": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": {"list_join": ["-", [{"get_attr": ["web", "out"]}]]}},
                "metadata": {"tags": ["a", "b"]},
            },
            "web": {
                "type": "OS::Heat::TestResource",
                "properties": {"value": {"get_param": "size"}, "extra": ["x", {"y": 1}]},
            },
        },
        parameters={"size": {"type": "string"}},
    )
    raw = copy.deepcopy(template)
    parsed = Template.parse(template)
    definition = StackDefinition(parsed, {"size": "big"}, IDENTITY)
    db = parsed.parsed_resources["db"]
    assert definition.resources["db"].bound_properties.value is db.properties
    assert definition.resources["db"].metadata is parsed.raw["resources"]["db"]["metadata"]
    web = definition.resources["web"]
    assert web.properties == {"value": "big", "extra": ["x", {"y": 1}]}
    assert web.properties["extra"] is parsed.raw["resources"]["web"]["properties"]["extra"]
    assert definition.resources["db"].properties == raw["resources"]["db"]["properties"]
    assert template == raw
    assert parsed.raw == raw


def test_empty_yaml_sections_of_a_resource_are_empty() -> None:
    definition = define(
        "heat_template_version: 2021-04-16\nresources:\n  a:\n    type: T\n    properties:\n"
    )
    assert definition.resources["a"].properties == {}


@pytest.mark.parametrize(
    ("resource", "where", "message"),
    [
        ({"properties": {}}, "resources.a.type", "expected a resource type name"),
        ({"type": "T", "Properties": {}}, "resources.a", "unknown key(s) Properties"),
        ({"type": "T", "properties": ["x"]}, "resources.a.properties", "expected a map"),
        ({"type": "T", "depends_on": 3}, "resources.a.depends_on", "expected a resource name"),
        ({"type": "T", "depends_on": ["zz"]}, "resources.a.depends_on", "unknown resource"),
        (
            {"type": "T", "deletion_policy": "Keep"},
            "resources.a.deletion_policy",
            "expected one of",
        ),
        ({"type": "T", "deletion_policy": "Snapshot"}, "resources.a.deletion_policy", "Snapshot"),
        ({"type": "T", "external_id": "abc"}, "resources.a.external_id", "not supported"),
        ({"type": "T", "condition": 3}, "resources.a.condition", "expected a condition name"),
        ({"type": "T", "condition": "nope"}, "resources.a.condition", "unknown condition 'nope'"),
        (
            {"type": "T", "update_policy": {"x": {"get_attr": ["a", "b"]}}},
            "resources.a.update_policy",
            "must not refer to resources",
        ),
        ("T", "resources.a", "expected a map with a type"),
    ],
)
def test_malformed_resources_are_errors_that_say_where(
    resource: Any, where: str, message: str
) -> None:
    error = parse_error(hot.template({"a": resource}))
    assert error.where == where, error
    assert message in error.message, error


def test_lowercase_deletion_policy_needs_2016_10_14() -> None:
    error = parse_error(hot.template({"a": none(deletion_policy="delete")}, "2016-04-08"))
    assert "expected one of Delete, Retain" in error.message, error
    assert (
        define(hot.template({"a": none(deletion_policy="Retain")}, "2013-05-23"))
        .resources["a"]
        .deletion_policy
        == "Retain"
    )


def test_condition_key_needs_2016_10_14() -> None:
    error = parse_error(hot.template({"a": none(condition=True)}, "2016-04-08"))
    assert "unknown key(s) condition" in error.message, error


def test_deletion_policy_may_come_from_a_parameter() -> None:
    document = hot.template(
        {"a": none(deletion_policy={"get_param": "policy"})},
        parameters={"policy": {"type": "string", "default": "Retain"}},
    )
    assert define(document).resources["a"].deletion_policy == "Retain"
    assert "expected one of" in definition_error(document, {"policy": "Keep"}).message


def test_resource_names_must_not_contain_slashes() -> None:
    assert "without '/'" in parse_error(hot.template({"a/b": none()})).message


# -- dependencies and cycles ---------------------------------------------------------------------


def test_dependencies_come_from_depends_on_get_resource_and_get_attr() -> None:
    definition = define(
        hot.template(
            {
                "network": none(),
                "subnet": none(properties={"network": {"get_resource": "network"}}),
                "server": none(
                    depends_on="subnet",
                    properties={"ip": {"get_attr": ["port", "fixed_ips", 0, "ip_address"]}},
                ),
                "port": none(properties={"net": {"get_resource": "network"}}),
                "monitor": none(
                    depends_on=["server", "port"], metadata={"n": {"get_attr": ["network"]}}
                ),
            }
        )
    )
    assert dict(definition.dependencies()) == {
        "network": frozenset(),
        "subnet": {"network"},
        "server": {"subnet", "port"},
        "port": {"network"},
        "monitor": {"server", "port", "network"},
    }
    assert definition.resources["server"].depends_on == ("subnet",)


def test_cycle_is_named_in_dependency_order() -> None:
    error = definition_error(
        hot.template(
            {
                "a": none(properties={"x": {"get_resource": "b"}}),
                "b": none(properties={"x": {"get_attr": ["c", "out"]}}),
                "c": none(depends_on="a"),
                "d": none(depends_on="a"),
            }
        )
    )
    assert error.message == "dependency cycle: a -> b -> c -> a", error
    assert error.where == "resources.a"


def test_self_dependency_is_a_cycle() -> None:
    error = definition_error(hot.template({"a": none(properties={"me": {"get_resource": "a"}})}))
    assert error.message == "dependency cycle: a -> a", error


def test_cycle_only_through_a_false_branch_is_no_cycle() -> None:
    document = hot.template(
        {
            "a": none(properties={"x": {"if": ["flip", {"get_resource": "b"}, "none"]}}),
            "b": none(properties={"x": {"if": ["flip", "none", {"get_resource": "a"}]}}),
        },
        parameters={"flip": {"type": "boolean", "default": False}},
        conditions={"flip": {"get_param": "flip"}},
    )
    assert dict(define(document).dependencies()) == {"a": frozenset(), "b": {"a"}}
    assert dict(define(document, {"flip": True}).dependencies()) == {"a": {"b"}, "b": frozenset()}


def test_long_dependency_chains_do_not_hit_the_recursion_limit() -> None:
    resources = {f"r{i}": none(depends_on=f"r{i - 1}") if i else none() for i in range(3000)}
    resources["r0"] = none(depends_on="r2999")
    error = definition_error(hot.template(resources))
    assert error.message.startswith("dependency cycle: r0 -> r2999 -> r2998"), error.message[:80]


# -- conditions ----------------------------------------------------------------------------------


CONDITIONAL = """
heat_template_version: 2021-04-16
parameters:
  env: {type: string, default: dev, constraints: [{allowed_values: [dev, test, prod]}]}
  zones: {type: comma_delimited_list, default: "a,b"}
conditions:
  prod: {equals: [{get_param: env}, prod]}
  not_prod: {not: prod}
  test_or_prod: {or: [prod, {equals: [{get_param: env}, test]}]}
  multi_zone: {contains: [b, {get_param: zones}]}
  always: true
resources:
  db:
    type: OS::Heat::None
  replica:
    type: OS::Heat::None
    condition: prod
    properties:
      primary: {get_resource: db}
  cache:
    type: OS::Heat::None
    condition: {and: [test_or_prod, multi_zone]}
  app:
    type: OS::Heat::None
    depends_on: [replica, cache]
    properties:
      db: {get_attr: [db, address]}
      replica: {if: [prod, {get_attr: [replica, address]}]}
      tier: {if: [not_prod, small, large]}
  debug:
    type: OS::Heat::None
    condition: prod
  never:
    type: OS::Heat::None
    condition: false
outputs:
  replica_address:
    value: {get_attr: [replica, address]}
    condition: prod
  app_tier:
    value: {get_attr: [app, tier]}
  debug_on:
    value: {get_resource: debug}
    condition: {and: [always, prod]}
"""


def test_conditions_choose_resources_and_their_references() -> None:
    dev = define(CONDITIONAL)
    assert list(dev.resources) == ["db", "app"], "replica, cache, debug and never are disabled"
    assert dict(dev.conditions) == {
        "prod": False,
        "not_prod": True,
        "test_or_prod": False,
        "multi_zone": True,
        "always": True,
    }
    assert dev.dependencies()["app"] == {"db"}, "depends_on of disabled resources is dropped"
    prod = define(CONDITIONAL, {"env": "prod"})
    assert list(prod.resources) == ["db", "replica", "cache", "app", "debug"]
    assert prod.dependencies()["app"] == {"db", "replica", "cache"}


def test_conditions_apply_to_properties_and_outputs() -> None:
    data = {
        "db": ResourceData("db-1", {"address": "10.0.0.1"}),
        "replica": ResourceData("replica-1", {"address": "10.0.0.2"}),
        "app": ResourceData("app-1", {"tier": "large"}),
        "debug": ResourceData("debug-1"),
    }
    dev = define(CONDITIONAL)
    assert dev.resolve_properties("app", data) == {"db": "10.0.0.1", "tier": "small"}
    assert dev.resolve_outputs(data) == {
        "replica_address": None,
        "app_tier": "large",
        "debug_on": None,
    }, "outputs whose condition is false are null"
    prod = define(CONDITIONAL, {"env": "prod"})
    assert prod.resolve_properties("app", data) == {
        "db": "10.0.0.1",
        "replica": "10.0.0.2",
        "tier": "large",
    }
    assert prod.resolve_outputs(data) == {
        "replica_address": "10.0.0.2",
        "app_tier": "large",
        "debug_on": "debug-1",
    }


def test_output_referring_to_a_disabled_resource_is_an_error() -> None:
    document = CONDITIONAL.replace("condition: {and: [always, prod]}", "condition: always")
    error = definition_error(document)
    assert error.where == "outputs.debug_on.value: get_resource", error
    assert "resource 'debug' is disabled by its condition" in error.message, error
    define(document, {"env": "prod"})


def test_reference_to_a_disabled_resource_is_an_error() -> None:
    document = CONDITIONAL.replace(
        "tier: {if: [not_prod, small, large]}", "tier: {get_resource: cache}"
    )
    error = definition_error(document)
    assert error.where == "resources.app.properties.tier: get_resource", error
    assert "resource 'cache' is disabled by its condition" in error.message, error


def test_conditions_may_not_refer_to_resources_or_use_value_functions() -> None:
    for expression, message in [
        ({"equals": [{"get_resource": "a"}, "x"]}, "get_resource is not allowed in a condition"),
        ({"equals": [{"list_join": [",", []]}, ""]}, "list_join is not allowed in a condition"),
        ({"if": [True, True, False]}, "if is not allowed in a condition"),
    ]:
        error = parse_error(hot.template({"a": none()}, conditions={"c": expression}))
        assert error.where.startswith("conditions.c"), error
        assert message in error.message, error


def test_circular_conditions_are_named() -> None:
    error = definition_error(
        hot.template(
            {}, conditions={"a": {"not": "b"}, "b": {"and": [True, "c"]}, "c": {"or": ["a", True]}}
        )
    )
    assert error.message == "circular condition definition: a -> b -> c -> a", error


def test_condition_must_evaluate_to_a_boolean() -> None:
    document = hot.template(
        {},
        parameters={"name": {"type": "string", "default": "x"}},
        conditions={"c": {"get_param": "name"}},
    )
    error = definition_error(document)
    assert error.where == "conditions.c", error
    assert "must evaluate to true or false" in error.message, error
    assert (
        "unknown condition 'other'"
        in parse_error(hot.template({}, conditions={"c": {"not": "other"}})).message
    )


def test_boolean_parameter_can_be_a_condition() -> None:
    document = hot.template(
        {"extra": none(condition={"get_param": "enabled"})},
        parameters={"enabled": {"type": "boolean", "default": "no"}},
    )
    assert "extra" not in define(document).resources
    assert "extra" in define(document, {"enabled": "yes"}).resources


def test_contains_in_conditions_needs_2017_09_01() -> None:
    document = hot.template({}, "2017-02-24", conditions={"c": {"contains": ["a", ["a"]]}})
    assert "contains needs heat_template_version 2017-09-01" in parse_error(document).message


# -- types ---------------------------------------------------------------------------------------


def test_resource_registry_aliases_are_followed() -> None:
    document = hot.template(
        {
            "a": {"type": "My::Server"},
            "b": {"type": "OS::Nova::Server"},
            "c": {"type": "OS::Neutron::Port"},
            "d": {"type": "Legacy::Thing"},
        }
    )
    registry = {
        "My::Server": "OS::Nova::Server",
        "OS::Nova::*": "OS::Heat::None",
        "OS::Neutron::*": "Fake::Neutron::*",
        "Legacy::Thing": "My::Server",
    }
    definition = define(document, resource_registry=registry)
    assert {name: item.type for name, item in definition.resources.items()} == {
        "a": "OS::Heat::None",
        "b": "OS::Heat::None",
        "c": "Fake::Neutron::Port",
        "d": "OS::Heat::None",
    }


def test_unknown_type_is_reported_with_its_alias() -> None:
    known = {"OS::Heat::None", "OS::Heat::TestResource"}
    error = definition_error(
        hot.template({"web": {"type": "OS::Nova::Server"}}), type_exists=known.__contains__
    )
    assert error.where == "resources.web.type", error
    assert error.message == "unknown resource type 'OS::Nova::Server'", error
    error = definition_error(
        hot.template({"web": {"type": "Web"}}),
        resource_registry={"Web": "OS::Web"},
        type_exists=known.__contains__,
    )
    assert "unknown resource type 'OS::Web' (mapped from 'Web'" in error.message, error


def test_disabled_resources_need_no_known_type() -> None:
    document = hot.template({"a": {"type": "Not::Installed", "condition": False}})
    assert dict(define(document, type_exists=lambda _: False).resources) == {}


def test_alias_loops_are_errors() -> None:
    error = definition_error(
        hot.template({"a": {"type": "A"}}), resource_registry={"A": "B", "B": "A"}
    )
    assert error.message == "alias loop: A -> B -> A", error


# -- attributes and resolution -------------------------------------------------------------------


def test_required_attributes_are_collected_from_resources_and_outputs() -> None:
    definition = define(
        hot.template(
            {
                "server": none(),
                "lb": none(
                    properties={
                        "members": [{"get_attr": ["server", "first_address"]}],
                        "name": {"get_attr": ["server", "name", "short"]},
                    }
                ),
                "dns": none(metadata={"all": {"get_attr": ["lb"]}}),
            },
            outputs={"url": {"value": {"get_attr": ["server", "networks", "private", 0]}}},
        )
    )
    assert definition.required_attributes("server") == {"first_address", "name", "networks"}
    assert definition.required_attributes("lb") == {ALL_ATTRIBUTES}
    assert definition.required_attributes("dns") == frozenset()
    assert definition.required_attributes("unknown") == frozenset()


def test_required_attributes_follow_conditions() -> None:
    document = CONDITIONAL
    assert define(document).required_attributes("replica") == frozenset()
    assert define(document, {"env": "prod"}).required_attributes("replica") == {"address"}


def test_definition_keeps_references_unresolved_until_data_arrives() -> None:
    definition = define(
        hot.template(
            {
                "db": none(),
                "app": none(
                    properties={
                        "url": {
                            "str_replace": {
                                "template": "pg://HOST/NAME",
                                "params": {"HOST": {"get_attr": ["db", "ip"]}, "NAME": "shop"},
                            }
                        },
                        "size": 3,
                    }
                ),
            }
        )
    )
    assert definition.resources["app"].properties == {
        "url": {
            "str_replace": {
                "template": "pg://HOST/NAME",
                "params": {"HOST": {"get_attr": ["db", "ip"]}, "NAME": "shop"},
            }
        },
        "size": 3,
    }
    json.dumps(definition.resources["app"].properties)
    data = {"db": ResourceData("db-1", {"ip": "10.1.1.1"})}
    assert definition.resolve_properties("app", data) == {"url": "pg://10.1.1.1/shop", "size": 3}


def test_resolved_properties_are_fresh_copies() -> None:
    definition = define(
        hot.template(
            {"a": none(properties={"list": [1, 2]})},
            parameters={"p": {"type": "json", "default": {"k": [1]}}},
        )
    )
    first = definition.resolve_properties("a", {})
    first["list"].append(3)
    assert definition.resolve_properties("a", {}) == {"list": [1, 2]}
    assert definition.resources["a"].properties == {"list": [1, 2]}


def test_resolving_an_unknown_or_disabled_resource_is_an_error() -> None:
    definition = define(CONDITIONAL)
    with pytest.raises(TemplateError, match="not an enabled resource"):
        definition.resolve_properties("replica", {})
    assert "replica" not in definition.resources
    with pytest.raises(KeyError):
        definition.resources["replica"]


def test_metadata_is_resolved_like_properties() -> None:
    definition = define(
        hot.template({"a": none(), "b": none(metadata={"peer": {"get_resource": "a"}, "n": 1})})
    )
    assert definition.resolve_metadata("b", {"a": ResourceData("a-1")}) == {"peer": "a-1", "n": 1}


def test_properties_as_a_whole_may_come_from_functions_of_parameters() -> None:
    resources = {
        "a": none(properties={"map_merge": [{"get_param": "base"}, {"extra": True}]}),
        "b": none(properties={"if": ["never", {"x": 1}]}),
    }
    sections: dict[str, Any] = {
        "parameters": {"base": {"type": "json", "default": {"size": 1}}},
        "conditions": {"never": False},
    }
    definition = define(hot.template(resources, **sections))
    assert definition.resolve_properties("a", {}) == {"size": 1, "extra": True}
    assert definition.resolve_properties("b", {}) == {}, "a removed properties map is empty"
    resources["c"] = none(properties={"map_merge": [{"ref": {"get_resource": "a"}}]})
    error = definition_error(hot.template(resources, **sections))
    assert error.where == "resources.c.properties", error
    assert "must not depend on other resources as a whole" in error.message, error


def test_validate_reports_function_errors_that_depend_on_parameters() -> None:
    document = hot.template(
        {"a": none(properties={"x": {"str_split": [",", {"get_param": "csv"}, 5]}})},
        parameters={"csv": {"type": "string", "default": "a,b"}},
    )
    definition = define(document)
    with pytest.raises(TemplateError, match="index 5 is out of range") as caught:
        definition.validate()
    assert caught.value.where == "resources.a.properties.x: str_split"
    define(document, {"csv": "a,b,c,d,e,f"}).validate()


# -- real templates, end to end ------------------------------------------------------------------


WEB_STACK = """
heat_template_version: 2018-08-31
description: A load-balanced web tier with a database, in the style of Heat's examples.

parameter_groups:
  - label: Sizing
    parameters: [web_count, db_size]

parameters:
  web_count:
    type: number
    default: 2
    constraints:
      - range: {min: 1, max: 5}
        description: between one and five web servers
  db_size:
    type: number
    default: 10
  db_password:
    type: string
    hidden: true
    constraints:
      - length: {min: 8}
        description: the password needs at least 8 characters
  domain:
    type: string
    default: example.org
    constraints:
      - allowed_pattern: "[a-z.]+"

resources:
  db_password_hash:
    type: OS::Heat::Value
    properties:
      value: {digest: [sha256, {get_param: db_password}]}

  db:
    type: OS::Heat::TestResource
    deletion_policy: Retain
    properties:
      value:
        str_replace:
          template: "db of SIZE GB for STACK"
          params:
            SIZE: {get_param: db_size}
            STACK: {get_param: "OS::stack_name"}

  web:
    type: OS::Heat::TestResource
    depends_on: db
    metadata:
      db_ref: {get_resource: db}
    properties:
      value:
        list_join:
          - ","
          - repeat:
              for_each:
                "%index%": [a, b]
              template: "web-%index%"
      action_wait_secs:
        map_merge:
          - {create: 1}
          - {update: {get_param: web_count}}
      client_name: {get_attr: [db, output]}

  lb:
    type: OS::Heat::TestResource
    properties:
      value:
        make_url:
          scheme: https
          host: {str_replace: {template: "lb.DOMAIN", params: {DOMAIN: {get_param: domain}}}}
          path: /
      entity_name: {get_attr: [web, output]}

outputs:
  url:
    description: Where the shop is
    value: {get_attr: [lb, output]}
  web_servers:
    value: {str_split: [",", {get_attr: [web, output]}]}
  everything_about_db:
    value: {get_attr: [db]}
"""


def test_web_stack_end_to_end() -> None:
    definition = define(WEB_STACK, {"db_password": "correct horse", "web_count": "3"})
    definition.validate()
    assert list(definition.resources) == ["db_password_hash", "db", "web", "lb"]
    assert dict(definition.dependencies()) == {
        "db_password_hash": frozenset(),
        "db": frozenset(),
        "web": {"db"},
        "lb": {"web"},
    }
    assert definition.resources["db"].deletion_policy == "Retain"
    assert definition.required_attributes("db") == {"output", ALL_ATTRIBUTES}
    assert definition.required_attributes("web") == {"output"}
    assert definition.hidden_parameters == frozenset({"db_password"})

    data: dict[str, ResourceData] = {}
    resolved_db = definition.resolve_properties("db", data)
    assert resolved_db == {"value": "db of 10 GB for shop"}
    data["db"] = ResourceData("shop-db-x1", {"output": resolved_db["value"]})
    web = definition.resolve_properties("web", data)
    assert web == {
        "value": "web-a,web-b",
        "action_wait_secs": {"create": 1, "update": 3},
        "client_name": "db of 10 GB for shop",
    }
    assert definition.resolve_metadata("web", data) == {"db_ref": "shop-db-x1"}
    data["web"] = ResourceData("shop-web-x2", {"output": web["value"]})
    lb = definition.resolve_properties("lb", data)
    assert lb == {"value": "https://lb.example.org/", "entity_name": "web-a,web-b"}
    data["lb"] = ResourceData("shop-lb-x3", {"output": lb["value"]})
    assert definition.resolve_outputs(data) == {
        "url": "https://lb.example.org/",
        "web_servers": ["web-a", "web-b"],
        "everything_about_db": {"output": "db of 10 GB for shop"},
    }
    assert definition.resolve_properties("db_password_hash", data) == {
        "value": hashlib.sha256(b"correct horse").hexdigest()
    }


def test_web_stack_rejects_bad_parameters_with_the_constraint_description() -> None:
    error = definition_error(WEB_STACK, {"db_password": "short"})
    assert error.where == "parameters.db_password", error
    assert error.message.startswith("the password needs at least 8 characters"), error
    assert "short" not in str(error), "a hidden value must not leak"
    error = definition_error(WEB_STACK, {"db_password": "long enough", "web_count": 9})
    assert "between one and five web servers" in error.message, error
    error = definition_error(WEB_STACK, {})
    assert error.where == "parameters.db_password", error
    assert "a value is required" in error.message, error


# In the style of Heat's functional test for conditions (test_conditions.py).
HEAT_CONDITIONS = """
heat_template_version: wallaby
parameters:
  env_type:
    default: test
    type: string
    constraints:
      - allowed_values: [prod, test]
  zone:
    type: string
    default: beijing
conditions:
  prod: {equals: [{get_param: env_type}, prod]}
  test:
    not:
      equals:
        - {get_param: env_type}
        - prod
  beijing_prod:
    and:
      - equals: [{get_param: zone}, beijing]
      - equals: [{get_param: env_type}, prod]
  fujian_zone:
    or:
      - equals: [{get_param: zone}, fuzhou]
      - equals: [{get_param: zone}, xiamen]
resources:
  test_res:
    type: OS::Heat::TestResource
    properties:
      value: {if: ["prod", "prod_res", "test_res"]}
  prod_res:
    type: OS::Heat::TestResource
    properties:
      value: prod_res
    condition: prod
  test_res1:
    type: OS::Heat::TestResource
    properties:
      value: just in test env
    condition: test
  beijing_prod_res:
    type: OS::Heat::TestResource
    condition: beijing_prod
    depends_on: [prod_res]
    properties:
      value: beijing_prod_res
  fujian_res:
    type: OS::Heat::TestResource
    condition: fujian_zone
    properties:
      value: fujian_res
  fujian_prod_res:
    type: OS::Heat::TestResource
    condition: {and: [fujian_zone, prod]}
    properties:
      value: {if: [fujian_zone, fujian_prod_res]}
outputs:
  res_value:
    value: {get_attr: [prod_res, output]}
    condition: prod
  test_res_value:
    value: {get_attr: [test_res, output]}
  prod_resource:
    value: {if: [prod, {get_resource: prod_res}, "no_prod_res"]}
  test_res1_value:
    value: {if: [test, {get_attr: [test_res1, output]}, "no_test_res1"]}
  beijing_prod_res:
    value: {if: [beijing_prod, {get_resource: beijing_prod_res}, "no_prod_res"]}
"""


@pytest.mark.parametrize(
    ("parameters", "resources", "outputs"),
    [
        (
            {},
            ["test_res", "test_res1"],
            {
                "res_value": None,
                "test_res_value": "test_res",
                "prod_resource": "no_prod_res",
                "test_res1_value": "just in test env",
                "beijing_prod_res": "no_prod_res",
            },
        ),
        (
            {"env_type": "prod"},
            ["test_res", "prod_res", "beijing_prod_res"],
            {
                "res_value": "prod_res",
                "test_res_value": "prod_res",
                "prod_resource": "prod_res-id",
                "test_res1_value": "no_test_res1",
                "beijing_prod_res": "beijing_prod_res-id",
            },
        ),
        (
            {"env_type": "prod", "zone": "xiamen"},
            ["test_res", "prod_res", "fujian_res", "fujian_prod_res"],
            {
                "res_value": "prod_res",
                "test_res_value": "prod_res",
                "prod_resource": "prod_res-id",
                "test_res1_value": "no_test_res1",
                "beijing_prod_res": "no_prod_res",
            },
        ),
    ],
)
def test_heat_conditions_template_end_to_end(
    parameters: dict[str, Any], resources: list[str], outputs: dict[str, Any]
) -> None:
    definition = define(HEAT_CONDITIONS, parameters)
    definition.validate()
    assert list(definition.resources) == resources
    data: dict[str, ResourceData] = {}
    for name in resources:  # template order is a valid order here
        properties = definition.resolve_properties(name, data)
        data[name] = ResourceData(f"{name}-id", {"output": properties["value"]})
    assert definition.resolve_outputs(data) == outputs


# -- scale ---------------------------------------------------------------------------------------


def test_ten_thousand_resources_are_cheap_to_define_per_worker_step() -> None:
    count = 10_000
    resources = {
        f"r{i}": {
            "type": "OS::Heat::TestResource",
            "properties": {
                "value": {
                    "str_replace": {"template": "n-$i", "params": {"$i": {"get_param": "p"}}}
                },
                **({"prev": {"get_attr": [f"r{i - 1}", "output"]}} if i else {}),
            },
        }
        for i in range(count)
    }
    template = Template.parse(
        hot.template(resources, parameters={"p": {"type": "string", "default": "x"}})
    )
    started = time.perf_counter()
    definition = StackDefinition(template, {}, IDENTITY, type_exists=lambda _: True)
    data = {f"r{count - 2}": ResourceData("id", {"output": "o"})}
    assert definition.resolve_properties(f"r{count - 1}", data) == {"value": "n-x", "prev": "o"}
    elapsed = time.perf_counter() - started
    assert definition.dependencies()[f"r{count - 1}"] == {f"r{count - 2}"}
    assert elapsed < 1.0, f"one worker step's definition of {count} resources took {elapsed:.2f}s"


# -- less common paths ---------------------------------------------------------------------------


def test_yaml_flow_map_that_is_not_json_still_parses() -> None:
    assert Template.parse("{heat_template_version: 2021-04-16}").version == "2021-04-16"


def test_non_finite_numbers_are_not_json() -> None:
    error = parse_error(
        "heat_template_version: 2021-04-16\nresources: {a: {type: T, metadata: {x: .inf}}}\n"
    )
    assert error.where == "resources.a.metadata.x", error
    assert "not a valid JSON number" in error.message, error


@pytest.mark.parametrize(
    ("sections", "where", "message"),
    [
        ({"resources": ["a"]}, "resources", "expected a map"),
        (
            {"outputs": {"o": {"description": "no value"}}},
            "outputs.o",
            "expected a map with a value",
        ),
        ({"outputs": {"o": {"value": 1, "Value": 2}}}, "outputs.o", "unknown key(s) Value"),
        ({"outputs": {"o": {"value": 1, "description": 2}}}, "outputs.o.description", "a string"),
        (
            {"resources": {"a": {"type": "T", "description": 1}}},
            "resources.a.description",
            "string",
        ),
        ({"parameters": ["p"]}, "parameters", "expected a map"),
    ],
)
def test_malformed_sections_and_outputs_say_where(
    sections: dict[str, Any], where: str, message: str
) -> None:
    error = parse_error({"heat_template_version": "2021-04-16", **sections})
    assert error.where == where, error
    assert message in error.message, error


def test_output_condition_needs_2016_10_14() -> None:
    document = {
        "heat_template_version": "2016-04-08",
        "outputs": {"o": {"value": 1, "condition": True}},
    }
    assert "unknown key(s) condition" in parse_error(document).message


def test_properties_from_a_parameter_must_be_a_map() -> None:
    document = hot.template(
        {"a": none(properties={"get_param": "props"})},
        parameters={"props": {"type": "json", "default": [1]}},
    )
    error = definition_error(document)
    assert error.where == "resources.a.properties", error
    assert "expected a map" in error.message, error
    assert define(document, {"props": {"k": "v"}}).resolve_properties("a", {}) == {"k": "v"}


def test_registry_alias_to_itself_is_the_type() -> None:
    definition = define(hot.template({"a": {"type": "A"}}), resource_registry={"A": "A"})
    assert definition.resources["a"].type == "A"


def test_template_equality_and_names() -> None:
    template = Template.parse(hot.template({"a": none(), "b": none(condition=False)}))
    assert template.resource_names == ("a", "b")
    assert template != "not a template"
    assert "2021-04-16" in repr(template)
    assert "a" in repr(define(hot.template({"a": none()})).resources)
