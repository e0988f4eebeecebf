"""Template parameters: types and coercion of user values, constraints, defaults, groups."""

from __future__ import annotations

from typing import Any

import pytest

from convergence.operator.engine.hot.definition import StackDefinition, StackIdentity
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.parameters import (
    ParameterSchema,
    bind_parameter_values,
    parse_parameter_schemas,
    validate_parameter_groups,
)
from convergence.operator.engine.hot.template import Template

LATEST = "2021-04-16"
IDENTITY = StackIdentity(name="web", id="8f1c", project_id="tenant-1")


def schema(definition: dict[str, Any], version: str = LATEST) -> ParameterSchema:
    return ParameterSchema.from_template("p", definition, version)


def bind(definition: dict[str, Any], value: Any, version: str = LATEST) -> Any:
    schemas = {"p": schema(definition, version)}
    return bind_parameter_values(schemas, {} if value is None else {"p": value})["p"]


def bind_error(definition: dict[str, Any], value: Any, version: str = LATEST) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        bind(definition, value, version)
    return caught.value


# -- types and coercion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("3", 3), (3, 3), ("2.5", 2.5), (2.5, 2.5), (" 7 ", 7), ("-1", -1)],
)
def test_number_parameter_coerces_strings_like_heat(given: Any, expected: Any) -> None:
    value = bind({"type": "number"}, given)
    assert value == expected, f"{given!r} should coerce to {expected!r}, got {value!r}"
    assert type(value) is type(expected), f"{given!r} should give a {type(expected).__name__}"


@pytest.mark.parametrize("given", ["abc", "", True, [1], "nan", "inf"])
def test_number_parameter_rejects_what_is_not_a_finite_number(given: Any) -> None:
    error = bind_error({"type": "number"}, given)
    assert error.where == "parameters.p", error
    assert "expected a finite number" in error.message or "expected a number" in error.message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("true", True),
        ("yes", True),
        ("1", True),
        ("On", True),
        ("t", True),
        (True, True),
        (1, True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("off", False),
        ("N", False),
        (False, False),
    ],
)
def test_boolean_parameter_accepts_heats_true_and_false_strings(given: Any, expected: bool) -> None:
    assert bind({"type": "boolean"}, given) is expected, f"{given!r} should be {expected}"


def test_boolean_parameter_rejects_other_strings() -> None:
    error = bind_error({"type": "boolean"}, "maybe")
    assert "expected a boolean" in error.message, error


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ("a, b", ["a", " b"]),  # Heat does not strip
        ("", []),
        (["x", 1, True], ["x", "1", "True"]),
    ],
)
def test_comma_delimited_list_from_string_or_list(given: Any, expected: list[str]) -> None:
    assert bind({"type": "comma_delimited_list"}, given) == expected


def test_comma_delimited_list_rejects_nested_values() -> None:
    error = bind_error({"type": "comma_delimited_list"}, [{"a": 1}])
    assert "list of strings" in error.message, error


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
        ({"k": "v"}, {"k": "v"}),
        ([{"k": "v"}], [{"k": "v"}]),
        ("", {}),
    ],
)
def test_json_parameter_from_json_string_map_or_list(given: Any, expected: Any) -> None:
    assert bind({"type": "json"}, given) == expected


@pytest.mark.parametrize("given", ["{not json", "3", 3])
def test_json_parameter_rejects_invalid_json_and_scalars(given: Any) -> None:
    error = bind_error({"type": "json"}, given)
    assert "JSON" in error.message, error


def test_string_parameter_takes_scalars_as_their_string_form() -> None:
    assert bind({"type": "string"}, 42) == "42"
    assert bind({"type": "string"}, "x") == "x"
    error = bind_error({"type": "string"}, {"a": 1})
    assert "expected a string" in error.message, error


def test_json_value_is_copied_so_callers_cannot_change_the_stack() -> None:
    given = {"a": [1]}
    value = bind({"type": "json"}, given)
    given["a"].append(2)
    assert value == {"a": [1]}, "the bound value must not share the caller's lists"


# -- defaults and required -----------------------------------------------------------------------


def test_default_is_used_and_coerced_when_no_value_is_given() -> None:
    assert bind({"type": "number", "default": "5"}, None) == 5
    assert bind({"type": "comma_delimited_list", "default": "a,b"}, None) == ["a", "b"]


def test_missing_required_parameter_is_an_error_naming_it() -> None:
    error = bind_error({"type": "string"}, None)
    assert error.where == "parameters.p"
    assert "a value is required" in error.message, error


def test_none_from_the_user_counts_as_not_given() -> None:
    schemas = {"p": schema({"type": "string", "default": "d"})}
    assert bind_parameter_values(schemas, {"p": None}) == {"p": "d"}


def test_invalid_default_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"parameters\.p\.default: invalid default"):
        schema({"type": "number", "default": "many"})
    with pytest.raises(TemplateError, match="must be odd"):
        schema(
            {
                "type": "number",
                "default": 2,
                "constraints": [{"modulo": {"step": 2, "offset": 1}, "description": "must be odd"}],
            }
        )


def test_undeclared_user_parameter_is_an_error() -> None:
    schemas = parse_parameter_schemas({"a": {"type": "string", "default": ""}}, LATEST)
    with pytest.raises(TemplateError, match=r"parameters\.b: not declared in the template"):
        bind_parameter_values(schemas, {"b": "x"})


def test_pseudo_parameters_cannot_be_given_or_declared() -> None:
    with pytest.raises(TemplateError, match="pseudo parameter"):
        bind_parameter_values({}, {"OS::stack_name": "x"})
    with pytest.raises(TemplateError, match="pseudo parameter"):
        parse_parameter_schemas({"OS::stack_id": {"type": "string"}}, LATEST)


# -- constraints ---------------------------------------------------------------------------------


def with_constraint(parameter_type: str, constraint: dict[str, Any]) -> dict[str, Any]:
    return {"type": parameter_type, "constraints": [constraint]}


@pytest.mark.parametrize(
    ("parameter_type", "constraint", "good", "bad"),
    [
        ("string", {"length": {"min": 2, "max": 3}}, "abc", "a"),
        ("comma_delimited_list", {"length": {"max": 1}}, "a", "a,b"),
        ("json", {"length": {"min": 1}}, {"k": 1}, {}),
        ("number", {"range": {"min": 1, "max": 10}}, "10", 11),
        ("number", {"range": {"min": 0.5}}, 0.5, 0.4),
        ("number", {"modulo": {"step": 2, "offset": 1}}, 3, 4),
        ("string", {"allowed_values": ["dev", "prod"]}, "prod", "test"),
        ("number", {"allowed_values": [1, 2]}, "2", 3),
        ("boolean", {"allowed_values": [True]}, "yes", "no"),
        ("comma_delimited_list", {"allowed_values": ["a", "b"]}, "b,a", "a,c"),
        ("string", {"allowed_pattern": "[a-z]+"}, "abc", "abc1"),
    ],
)
def test_each_constraint_accepts_good_values_and_reports_its_description_for_bad_ones(
    parameter_type: str, constraint: dict[str, Any], good: Any, bad: Any
) -> None:
    described = {**constraint, "description": "Please follow the rule"}
    definition = with_constraint(parameter_type, described)
    bind(definition, good)
    error = bind_error(definition, bad)
    kind = next(iter(constraint))
    assert error.where == "parameters.p", error
    assert error.message.startswith("Please follow the rule"), error
    assert kind in error.message, f"the message should name the {kind} constraint: {error}"


def test_constraint_without_description_explains_the_violation() -> None:
    error = bind_error(with_constraint("number", {"range": {"min": 1, "max": 3}}), 5)
    assert error.message == "range: 5 is out of range (min: 1, max: 3)", error


def test_allowed_pattern_must_match_the_whole_value_from_its_start() -> None:
    definition = with_constraint("string", {"allowed_pattern": "[0-9]+"})
    assert bind(definition, "123") == "123"
    assert "does not match" in bind_error(definition, "x123").message
    assert "does not match" in bind_error(definition, "123x").message


def test_hidden_parameter_values_never_appear_in_errors() -> None:
    definition = {
        "type": "string",
        "hidden": True,
        "constraints": [{"length": {"min": 10}}, {"allowed_pattern": "[a-z]*"}],
    }
    error = bind_error(definition, "s3cret")
    assert "s3cret" not in str(error), error
    assert "******" in str(error), error
    type_error = bind_error({"type": "number", "hidden": True}, "s3cret")
    assert "s3cret" not in str(type_error), type_error


@pytest.mark.parametrize(
    ("parameter_type", "constraint"),
    [
        ("string", {"range": {"min": 1}}),
        ("number", {"length": {"min": 1}}),
        ("json", {"allowed_values": [1]}),
        ("boolean", {"allowed_pattern": "x"}),
        ("string", {"modulo": {"step": 2, "offset": 0}}),
    ],
)
def test_constraint_that_does_not_apply_to_the_type_is_rejected(
    parameter_type: str, constraint: dict[str, Any]
) -> None:
    with pytest.raises(TemplateError, match="does not apply to a"):
        schema(with_constraint(parameter_type, constraint))


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ({"range": {}}, "a range needs a min and/or a max"),
        ({"range": {"low": 1}}, "unknown key"),
        ({"length": {"min": 1.5}}, "must be an integer"),
        ({"range": {"min": "x"}}, "must be a number"),
        ({"modulo": {"step": 2}}, "both a step and an offset"),
        ({"modulo": {"step": 0, "offset": 0}}, "step must not be 0"),
        ({"modulo": {"step": 2, "offset": 2}}, "offset must be smaller"),
        ({"modulo": {"step": 3, "offset": -1}}, "both positive or both negative"),
        ({"allowed_values": "a"}, "expected a list"),
        ({"allowed_pattern": "("}, "invalid regular expression"),
        ({"range": {"min": 1}, "length": {"min": 1}}, "exactly one"),
        ({"description": "only words"}, "exactly one"),
        ({"between": [1, 2]}, "unknown key"),
        ("range", "expected a map"),
    ],
)
def test_malformed_constraints_are_template_errors(constraint: Any, message: str) -> None:
    parameter_type = "string" if "allowed" in str(constraint) else "number"
    with pytest.raises(TemplateError, match=message):
        schema(with_constraint(parameter_type, constraint))


def test_custom_constraint_is_rejected_clearly() -> None:
    with pytest.raises(TemplateError, match=r"custom_constraint .* not supported by Convergence"):
        schema(with_constraint("string", {"custom_constraint": "nova.flavor"}))


def test_modulo_constraint_needs_2017_02_24() -> None:
    definition = with_constraint("number", {"modulo": {"step": 2, "offset": 0}})
    with pytest.raises(TemplateError, match="modulo constraint needs heat_template_version"):
        schema(definition, "2016-10-14")
    assert schema(definition, "2017-02-24").constraints, "modulo is valid from 2017-02-24"


def test_tags_need_2018_03_02() -> None:
    definition = {"type": "string", "tags": ["role"]}
    with pytest.raises(TemplateError, match="tags need heat_template_version 2018-03-02"):
        schema(definition, "2017-09-01")
    assert schema(definition, "2018-03-02").tags == ("role",)


# -- schema keys ---------------------------------------------------------------------------------


def test_schema_keeps_label_description_hidden_and_immutable() -> None:
    parsed = schema(
        {
            "type": "string",
            "label": "Image",
            "description": "The image to boot",
            "hidden": "true",
            "immutable": True,
            "default": "cirros",
        }
    )
    assert (parsed.label, parsed.description, parsed.hidden, parsed.immutable) == (
        "Image",
        "The image to boot",
        True,
        True,
    )
    assert parsed.default == "cirros"
    assert not parsed.required, "a parameter with a default is optional"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"type": "integer"}, "expected one of string, number"),
        ({}, "expected one of string"),
        ({"type": "string", "Default": "x"}, "unknown key"),
        ("string", "expected a map"),
        ({"type": "string", "hidden": "perhaps"}, "expected a boolean"),
        ({"type": "string", "constraints": {"length": {}}}, "expected a list of constraints"),
        ({"type": "string", "label": 3}, "expected a string"),
    ],
)
def test_malformed_parameter_declarations_are_template_errors(
    definition: Any, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        schema(definition)


# -- parameter groups ----------------------------------------------------------------------------


def test_parameter_groups_reference_declared_parameters_once() -> None:
    validate_parameter_groups(
        [{"label": "Server", "parameters": ["image", "flavor"]}, {"parameters": ["key"]}],
        ["image", "flavor", "key"],
    )
    with pytest.raises(TemplateError, match=r"\"missing\" is not a declared parameter"):
        validate_parameter_groups([{"parameters": ["missing"]}], ["image"])
    with pytest.raises(TemplateError, match="one group only"):
        validate_parameter_groups([{"parameters": ["image"]}, {"parameters": ["image"]}], ["image"])
    with pytest.raises(TemplateError, match="needs a list of parameter names"):
        validate_parameter_groups([{"label": "empty"}], ["image"])
    with pytest.raises(TemplateError, match="expected a list"):
        validate_parameter_groups({"parameters": []}, ["image"])


# -- through a stack definition ------------------------------------------------------------------


def test_stack_definition_exposes_coerced_values_and_hidden_names() -> None:
    template = Template.parse(
        """
heat_template_version: 2021-04-16
parameters:
  count: {type: number, default: 1}
  password: {type: string, hidden: true}
  zones: {type: comma_delimited_list, default: "a,b"}
"""
    )
    definition = StackDefinition(template, {"count": "3", "password": "pw"}, IDENTITY)
    assert dict(definition.parameter_values) == {
        "count": 3,
        "password": "pw",
        "zones": ["a", "b"],
    }
    assert definition.hidden_parameters == frozenset({"password"})


def test_immutable_parameter_cannot_change_but_others_can() -> None:
    template = Template.parse(
        """
heat_template_version: 2021-04-16
parameters:
  size: {type: number, immutable: true, default: 1}
  name: {type: string, default: a}
"""
    )
    before = StackDefinition(template, {"size": 1}, IDENTITY)
    StackDefinition(template, {"size": "1", "name": "b"}, IDENTITY, previous=before)
    with pytest.raises(TemplateError) as caught:
        StackDefinition(template, {"size": 2}, IDENTITY, previous=before)
    assert caught.value.where == "parameters.size"
    assert caught.value.message == "immutable parameters cannot be changed: size (1 -> 2)"


def test_changed_hidden_immutable_parameter_does_not_show_values() -> None:
    template = Template.parse(
        """
heat_template_version: 2021-04-16
parameters:
  key: {type: string, immutable: true, hidden: true}
"""
    )
    before = StackDefinition(template, {"key": "old-secret"}, IDENTITY)
    with pytest.raises(TemplateError) as caught:
        StackDefinition(template, {"key": "new-secret"}, IDENTITY, previous=before)
    assert "secret" not in str(caught.value), caught.value


def test_immutability_applies_only_to_parameters_present_before_and_now() -> None:
    first = Template.parse("heat_template_version: 2021-04-16\n")
    second = Template.parse(
        """
heat_template_version: 2021-04-16
parameters:
  size: {type: number, immutable: true}
"""
    )
    before = StackDefinition(first, {}, IDENTITY)
    StackDefinition(second, {"size": 5}, IDENTITY, previous=before)


def test_less_common_declaration_errors_say_where() -> None:
    cases: list[tuple[Any, str, str]] = [
        (
            with_constraint("string", {"length": {"min": 1}, "description": 5}),
            "parameters.p.constraints[0].description",
            "expected a string",
        ),
        (
            with_constraint("string", {"length": {}}),
            "parameters.p.constraints[0].length",
            "a length",
        ),
        (with_constraint("string", {"length": 3}), "parameters.p.constraints[0].length", "a map"),
        ({"type": "string", "tags": "role"}, "parameters.p.tags", "expected a list of strings"),
    ]
    for definition, where, message in cases:
        with pytest.raises(TemplateError) as caught:
            schema(definition)
        assert caught.value.where == where, caught.value
        assert message in caught.value.message, caught.value
    with pytest.raises(TemplateError, match="expected a map"):
        parse_parameter_schemas(["p"], LATEST)


def test_infinite_float_is_not_a_number_value() -> None:
    assert "finite" in bind_error({"type": "number"}, float("inf")).message


def test_malformed_parameter_groups_say_where() -> None:
    for groups, where, message in [
        (["x"], "parameter_groups[0]", "expected a map"),
        ([{"parameters": [], "title": "x"}], "parameter_groups[0]", "unknown key(s) title"),
        ([{"parameters": [], "label": 1}], "parameter_groups[0].label", "expected a string"),
    ]:
        with pytest.raises(TemplateError) as caught:
            validate_parameter_groups(groups, ["p"])
        assert caught.value.where == where, caught.value
        assert message in caught.value.message, caught.value
    validate_parameter_groups([{"parameters": ["OS::stack_name"]}], [])
