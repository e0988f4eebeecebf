"""HOT intrinsic functions: results, argument errors, version gating, resolution against data."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from convergence.operator.engine.hot.definition import ResourceData, StackDefinition, StackIdentity
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.template import HOT_VERSIONS, Template
from convergence.operator.testing import hot

LATEST = "2021-04-16"
IDENTITY = StackIdentity(name="demo", id="1234-abcd", project_id="tenant-9")

# Data the traversal would push from the two resources every test template has.
DATA = {
    "server": ResourceData(
        "server-ref",
        {
            "first_address": "10.0.0.5",
            "networks": {"private": ["10.0.0.5", "fd00::5"]},
            "name": "server-1",
        },
    ),
    "volume": ResourceData("volume-ref", {"size": 10}),
}

PARAMETERS: dict[str, Any] = {
    "name": {"type": "string", "default": "web"},
    "count": {"type": "number", "default": 2},
    "flag": {"type": "boolean", "default": True},
    "env": {"type": "string", "default": "prod"},
    "zones": {"type": "comma_delimited_list", "default": "az1,az2"},
    "config": {"type": "json", "default": {"a": {"b": [10, 20]}, "list": [1, 2]}},
}


def template(snippet: Any, version: str = LATEST, **sections: Any) -> Template:
    """A template whose only output `result` is `snippet`."""
    document = hot.template(
        hot.resources("OS::Heat::None", server={}, volume={}),
        version,
        parameters=PARAMETERS,
        outputs={"result": {"value": snippet}},
        **sections,
    )
    if version >= "2016-10-14":
        document.setdefault(
            "conditions",
            {"is_prod": {"equals": [{"get_param": "env"}, "prod"]}, "never": False},
        )
    return Template.parse(document)


def evaluate(snippet: Any, version: str = LATEST, **parameters: Any) -> Any:
    """The value of `snippet` in a stack of `version`, resolved against DATA."""
    definition = StackDefinition(template(snippet, version), parameters, IDENTITY)
    return definition.resolve_outputs(DATA)["result"]


def error_of(snippet: Any, version: str = LATEST, **parameters: Any) -> TemplateError:
    """The TemplateError that parsing, binding or resolving `snippet` raises."""
    with pytest.raises(TemplateError) as caught:
        evaluate(snippet, version, **parameters)
    return caught.value


# -- get_param -----------------------------------------------------------------------------------


def test_get_param_gives_the_coerced_value() -> None:
    assert evaluate({"get_param": "count"}, count="5") == 5
    assert evaluate({"get_param": "zones"}) == ["az1", "az2"]


def test_get_param_follows_a_path_into_json_and_lists() -> None:
    assert evaluate({"get_param": ["config", "a", "b", 1]}) == 20
    assert evaluate({"get_param": ["config", "list", "0"]}) == 1, "digit strings index lists"
    assert evaluate({"get_param": ["zones", 1]}) == "az2"


def test_get_param_path_that_does_not_exist_gives_empty_string_like_heat() -> None:
    assert evaluate({"get_param": ["config", "missing"]}) == ""
    assert evaluate({"get_param": ["config", "list", 9]}) == ""
    assert evaluate({"get_param": ["count", "x"]}) == ""


def test_get_param_gives_pseudo_parameters_from_the_identity() -> None:
    assert evaluate({"get_param": "OS::stack_name"}) == "demo"
    assert evaluate({"get_param": "OS::stack_id"}) == "1234-abcd"
    assert evaluate({"get_param": "OS::project_id"}) == "tenant-9"


def test_get_param_of_unknown_parameter_names_it_and_suggests() -> None:
    error = error_of({"get_param": "nmae"})
    assert error.where == "outputs.result.value: get_param", error
    assert "unknown parameter 'nmae'" in error.message, error
    assert "did you mean 'name'" in error.message, error


@pytest.mark.parametrize("args", [[], "", {"a": 1}, [3]])
def test_get_param_with_wrong_arguments_says_what_was_expected(args: Any) -> None:
    error = error_of({"get_param": args})
    assert error.where == "outputs.result.value: get_param", error
    assert "expected a parameter name" in error.message or "must be a string" in error.message


def test_get_param_name_may_come_from_another_function() -> None:
    assert evaluate({"get_param": {"str_replace": {"template": "na_e", "params": {"_": "m"}}}}) == (
        "web"
    )


# -- get_resource and get_attr -------------------------------------------------------------------


def test_get_resource_gives_the_reference_id() -> None:
    assert evaluate({"get_resource": "server"}) == "server-ref"


def test_get_attr_gives_the_attribute_and_follows_its_path() -> None:
    assert evaluate({"get_attr": ["server", "first_address"]}) == "10.0.0.5"
    assert evaluate({"get_attr": ["server", "networks", "private", 1]}) == "fd00::5"


def test_get_attr_missing_path_element_or_attribute_gives_none() -> None:
    assert evaluate({"get_attr": ["server", "networks", "public", 0]}) is None
    assert evaluate({"get_attr": ["server", "networks", "private", 7]}) is None
    assert evaluate({"get_attr": ["server", "networks", "private", "0"]}) is None
    assert evaluate({"get_attr": ["server", "nonexistent"]}) is None


def test_get_attr_with_resource_alone_gives_all_attributes() -> None:
    assert evaluate({"get_attr": ["volume"]}) == {"size": 10}


def test_get_attr_of_all_attributes_needs_2015_10_15() -> None:
    error = error_of({"get_attr": ["volume"]}, "2015-04-30")
    assert "expected [resource_name, attribute_name, (path...)]" in error.message, error
    assert evaluate({"get_attr": ["volume"]}, "2015-10-15") == {"size": 10}


def test_get_attr_path_elements_may_be_functions() -> None:
    assert evaluate({"get_attr": ["server", "networks", {"get_param": "name"}]}, name="x") is None
    snippet = {"get_attr": ["server", "networks", {"str_split": [",", "private,public", 0]}, 0]}
    assert evaluate(snippet) == "10.0.0.5"


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ({"get_resource": "sever"}, "outputs.result.value: get_resource"),
        ({"get_attr": ["sever", "name"]}, "outputs.result.value: get_attr"),
        ({"list_join": [",", [{"get_attr": ["sever", "x"]}]]}, "value.list_join[1][0]: get_attr"),
    ],
)
def test_reference_to_unknown_resource_says_where_and_suggests(snippet: Any, where: str) -> None:
    error = error_of(snippet)
    assert error.where.endswith(where), error
    assert "unknown resource 'sever'" in error.message, error
    assert "did you mean 'server'" in error.message, error


@pytest.mark.parametrize("args", [[], "server", [1, "a"], ["server", 2]])
def test_get_attr_with_wrong_arguments_says_what_was_expected(args: Any) -> None:
    error = error_of({"get_attr": args})
    assert "get_attr" in error.where, error
    assert "expected [resource_name" in error.message or "must be a string" in error.message


def test_get_resource_name_may_come_from_a_parameter() -> None:
    assert evaluate({"get_resource": {"get_param": "name"}}, name="volume") == "volume-ref"
    error = error_of({"get_resource": {"get_param": "name"}}, name="nothing")
    assert "unknown resource 'nothing'" in error.message, error


def test_resolving_without_the_data_of_a_required_resource_is_an_error() -> None:
    definition = StackDefinition(template({"get_attr": ["server", "name"]}), {}, IDENTITY)
    with pytest.raises(TemplateError, match="no data for resource 'server'") as caught:
        definition.resolve_outputs({})
    assert caught.value.where == "outputs.result.value: get_attr"


def test_resolved_attribute_values_are_copies() -> None:
    definition = StackDefinition(template({"get_attr": ["server", "networks"]}), {}, IDENTITY)
    first = definition.resolve_outputs(DATA)["result"]
    first["private"].append("changed")
    assert definition.resolve_outputs(DATA)["result"] == {"private": ["10.0.0.5", "fd00::5"]}
    assert DATA["server"].attributes["networks"] == {"private": ["10.0.0.5", "fd00::5"]}


# -- list_join -----------------------------------------------------------------------------------


def test_list_join_joins_several_lists_and_serialises_maps() -> None:
    assert evaluate({"list_join": [", ", ["a", "b"], ["c"]]}) == "a, b, c"
    assert evaluate({"list_join": ["-", [{"k": 1}, [1, 2], None]]}) == '{"k": 1}-[1, 2]-'
    assert evaluate({"list_join": [",", {"get_param": "zones"}]}) == "az1,az2"


def test_list_join_before_2015_10_15_takes_one_list_of_strings() -> None:
    assert evaluate({"list_join": [",", ["a", "b"]]}, "2014-10-16") == "a,b"
    error = error_of({"list_join": [",", ["a"], ["b"]]}, "2014-10-16")
    assert "expected [delimiter, [string, ...]]" in error.message, error
    error = error_of({"list_join": [",", [{"k": 1}]]}, "2014-10-16")
    assert "items to join must be strings" in error.message, error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("a,b", "expected [delimiter"),
        ([","], "expected [delimiter"),
        ([1, ["a"]], "the delimiter must be a string"),
        ([",", "ab"], "expected lists to join"),
        ([",", [1]], "items to join must be strings, maps or lists"),
    ],
)
def test_list_join_argument_errors(args: Any, message: str) -> None:
    assert message in error_of({"list_join": args}).message


def test_list_join_with_attributes_resolves_when_data_arrives() -> None:
    snippet = {"list_join": [":", [{"get_attr": ["server", "name"]}, {"get_resource": "volume"}]]}
    assert evaluate(snippet) == "server-1:volume-ref"


# -- str_replace family --------------------------------------------------------------------------


def test_str_replace_substitutes_longest_keys_first() -> None:
    snippet = {
        "str_replace": {
            "template": "$var $var2 $var",
            "params": {"$var": "a", "$var2": "b"},
        }
    }
    assert evaluate(snippet) == "a b a"


def test_str_replace_does_not_substitute_inside_replaced_values() -> None:
    snippet = {"str_replace": {"template": "AB", "params": {"A": "B", "B": "C"}}}
    assert evaluate(snippet) == "BC"


def test_str_replace_serialises_numbers_and_maps() -> None:
    snippet = {
        "str_replace": {
            "template": "n=N m=M none=X",
            "params": {"N": 3, "M": {"a": [1]}, "X": None},
        }
    }
    assert evaluate(snippet) == 'n=3 m={"a": [1]} none='
    assert "param 'M' must be one of strings or numbers" in (
        error_of(snippet, "2015-04-30").message
    ), "before 2015-10-15 maps are not serialised"


def test_str_replace_with_attribute_params() -> None:
    snippet = {
        "str_replace": {
            "template": "http://HOST:PORT/",
            "params": {"HOST": {"get_attr": ["server", "first_address"]}, "PORT": 80},
        }
    }
    assert evaluate(snippet) == "http://10.0.0.5:80/"


@pytest.mark.parametrize(
    "args",
    [
        {"template": "x"},
        {"params": {}},
        {"template": "x", "params": {}, "extra": 1},
        ["x", {}],
        {"template": "x", "params": ["a"]},
    ],
)
def test_str_replace_argument_errors_show_the_expected_form(args: Any) -> None:
    message = error_of({"str_replace": args}).message
    assert "expected a map {template" in message or "params must be a map" in message, message


def test_str_replace_template_must_be_a_string() -> None:
    error = error_of({"str_replace": {"template": ["x"], "params": {}}})
    assert "the template must be a string" in error.message, error


def test_str_replace_strict_requires_every_key_to_occur() -> None:
    good = {"str_replace_strict": {"template": "a-b", "params": {"a": "1", "b": "2"}}}
    assert evaluate(good) == "1-2"
    bad = {"str_replace_strict": {"template": "a", "params": {"a": "1", "zz": "2"}}}
    error = error_of(bad)
    assert error.where.endswith(": str_replace_strict"), error
    assert "not found in the template: zz" in error.message, error


def test_str_replace_vstrict_also_rejects_empty_values() -> None:
    assert evaluate({"str_replace_vstrict": {"template": "a", "params": {"a": "1"}}}) == "1"
    empty: Any
    for empty in ("", None, [], {}):
        snippet = {"str_replace_vstrict": {"template": "a", "params": {"a": empty}}}
        assert "has an empty value" in error_of(snippet).message, f"{empty!r} is empty"
    snippet = {"str_replace_vstrict": {"template": "a", "params": {"a": "1", "b": "2"}}}
    assert "not found in the template: b" in error_of(snippet).message


def test_str_replace_strict_and_vstrict_versions() -> None:
    strict = {"str_replace_strict": {"template": "a", "params": {"a": "1"}}}
    vstrict = {"str_replace_vstrict": {"template": "a", "params": {"a": "1"}}}
    assert "needs heat_template_version 2017-02-24" in error_of(strict, "2016-10-14").message
    assert evaluate(strict, "2017-02-24") == "1"
    assert "needs heat_template_version 2017-09-01" in error_of(vstrict, "2017-02-24").message


# -- str_split -----------------------------------------------------------------------------------


def test_str_split_gives_parts_or_the_part_at_an_index() -> None:
    assert evaluate({"str_split": [",", "a,b,c"]}) == ["a", "b", "c"]
    assert evaluate({"str_split": [",", "a,b,c", 1]}) == "b"
    assert evaluate({"str_split": [",", "a,b,c", "2"]}) == "c"
    assert evaluate({"str_split": [".", {"get_attr": ["server", "first_address"]}, 3]}) == "5"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([",", "a,b", 5], "index 5 is out of range: expected 0 to 1"),
        ([",", "a,b", "x"], "the index must be an integer"),
        (["", "a"], "non-empty string"),
        ([",", 3], "expected a string to split"),
        ([","], "expected arguments of the form"),
        ("a,b", "expected arguments of the form"),
    ],
)
def test_str_split_argument_errors(args: Any, message: str) -> None:
    assert message in error_of({"str_split": args}).message


def test_str_split_needs_2015_10_15() -> None:
    error = error_of({"str_split": [",", "a"]}, "2015-04-30")
    assert error.where == "outputs.result.value: str_split", error
    assert "str_split needs heat_template_version 2015-10-15 or later" in error.message


# -- repeat --------------------------------------------------------------------------------------


def test_repeat_builds_one_item_per_value() -> None:
    snippet = {
        "repeat": {
            "for_each": {"<%port%>": [80, 443]},
            "template": {"protocol": "tcp", "port": "<%port%>"},
        }
    }
    assert evaluate(snippet) == [
        {"protocol": "tcp", "port": "80"},
        {"protocol": "tcp", "port": "443"},
    ]


def test_repeat_takes_every_combination_by_default() -> None:
    snippet = {
        "repeat": {
            "for_each": {"%a%": ["x", "y"], "%b%": ["1", "2"]},
            "template": "%a%-%b%",
        }
    }
    assert evaluate(snippet) == ["x-1", "x-2", "y-1", "y-2"]


def test_repeat_without_permutations_pairs_items() -> None:
    snippet = {
        "repeat": {
            "for_each": {"%a%": ["x", "y"], "%b%": ["1", "2"]},
            "template": "%a%-%b%",
            "permutations": False,
        }
    }
    assert evaluate(snippet) == ["x-1", "y-2"]
    unequal = {"repeat": {**snippet["repeat"], "for_each": {"%a%": ["x"], "%b%": ["1", "2"]}}}
    assert "same length" in error_of(unequal).message


def test_repeat_over_a_map_uses_its_keys_and_replaces_in_keys_too() -> None:
    snippet = {
        "repeat": {
            "for_each": {"%k%": {"get_param": "config"}},
            "template": {"name-%k%": "%k%"},
        }
    }
    assert evaluate(snippet) == [{"name-a": "a"}, {"name-list": "list"}]


def test_repeat_over_parameters_and_attributes() -> None:
    snippet = {
        "repeat": {
            "for_each": {"%zone%": {"get_param": "zones"}},
            "template": {"zone": "%zone%", "ip": {"get_attr": ["server", "first_address"]}},
        }
    }
    assert evaluate(snippet) == [
        {"zone": "az1", "ip": "10.0.0.5"},
        {"zone": "az2", "ip": "10.0.0.5"},
    ]


def test_repeat_version_differences() -> None:
    over_map = {"repeat": {"for_each": {"%k%": {"a": 1}}, "template": "%k%"}}
    assert "must be a list" in error_of(over_map, "2016-04-08").message
    assert evaluate(over_map, "2016-10-14") == ["a"]
    pairs = {"repeat": {"for_each": {"%k%": ["a"]}, "template": "%k%", "permutations": False}}
    assert "permutations needs heat_template_version 2017-09-01" in (
        error_of(pairs, "2017-02-24").message
    )
    assert "repeat needs heat_template_version 2015-04-30" in (
        error_of({"repeat": {"for_each": {"%k%": ["a"]}, "template": "%k%"}}, "2014-10-16").message
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"template": "x"}, "expected {for_each"),
        ({"for_each": ["a"], "template": "x"}, "for_each must be a map"),
        ({"for_each": {"%a%": "abc"}, "template": "x"}, "must be a list or a map"),
        ({"for_each": {"%a%": [[1]]}, "template": "x"}, "must be strings or numbers"),
        ({"for_each": {"%a%": ["1"]}, "template": "x", "permutations": "no"}, "true or false"),
        ({"for_each": {"%a%": ["1"]}, "template": "x", "loop": 1}, "unknown key(s) loop"),
    ],
)
def test_repeat_argument_errors(args: Any, message: str) -> None:
    assert message in error_of({"repeat": args}).message


# -- digest --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512", "SHA256"])
def test_digest_gives_the_hex_digest(algorithm: str) -> None:
    expected = hashlib.new(algorithm.lower(), b"hello").hexdigest()
    assert evaluate({"digest": [algorithm, "hello"]}) == expected


def test_digest_errors_and_version() -> None:
    assert "unknown algorithm 'rot13'" in error_of({"digest": ["rot13", "x"]}).message
    assert "two strings" in error_of({"digest": ["sha1", 3]}).message
    assert "expected arguments of the form [algorithm, value]" in (
        error_of({"digest": ["sha1"]}).message
    )
    assert "digest needs heat_template_version 2015-04-30" in (
        error_of({"digest": ["sha1", "x"]}, "2014-10-16").message
    )


# -- maps and lists ------------------------------------------------------------------------------


def test_map_merge_later_maps_win() -> None:
    snippet = {"map_merge": [{"a": 1, "b": 1}, {"b": 2}, None, {"get_param": "config"}]}
    assert evaluate(snippet) == {"a": {"b": [10, 20]}, "b": 2, "list": [1, 2]}
    assert "items to merge must be maps" in error_of({"map_merge": [{"a": 1}, [1]]}).message
    assert "map_merge needs heat_template_version 2016-04-08" in (
        error_of({"map_merge": [{}]}, "2015-10-15").message
    )


def test_map_replace_renames_keys_and_values() -> None:
    snippet = {
        "map_replace": [
            {"k1": "v1", "k2": "v2"},
            {"keys": {"k1": "K1"}, "values": {"v2": "V2"}},
        ]
    }
    assert evaluate(snippet) == {"K1": "v1", "k2": "V2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([{"a": 1, "b": 2}, {"keys": {"a": "b"}}], "collides with a key in the input map"),
        ([{"a": 1, "b": 2}, {"keys": {"a": "c", "b": "c"}}], "collides with a key in the output"),
        ([{"a": 1}, {"names": {}}], "unknown key(s) names"),
        ([{"a": 1}], "expected arguments of the form"),
        ([[1], {}], "the first argument must be a map"),
    ],
)
def test_map_replace_errors(args: Any, message: str) -> None:
    assert message in error_of({"map_replace": args}).message


def test_list_concat_and_unique() -> None:
    assert evaluate({"list_concat": [[1, 2], None, [2, {"a": 1}]]}) == [1, 2, 2, {"a": 1}]
    unique = {"list_concat_unique": [[1, 2], [2, {"a": 1}], [{"a": 1}]]}
    assert evaluate(unique) == [1, 2, {"a": 1}]
    assert "must be lists" in error_of({"list_concat": [[1], "ab"]}).message
    assert "list_concat needs heat_template_version 2017-09-01" in (
        error_of({"list_concat": [[1]]}, "2017-02-24").message
    )


def test_filter_removes_values() -> None:
    assert evaluate({"filter": [[2, None], [1, 2, None, 3]]}) == [1, 3]
    assert evaluate({"filter": [None, [1]]}) == [1]
    assert "expected arguments of the form [values_to_remove, list]" in (
        error_of({"filter": [[1]]}).message
    )
    assert "expected a list to filter" in error_of({"filter": [[1], "abc"]}).message
    assert "filter needs heat_template_version 2017-02-24" in (
        error_of({"filter": [[1], [1]]}, "2016-10-14").message
    )


def test_contains_checks_membership() -> None:
    assert evaluate({"contains": ["az2", {"get_param": "zones"}]}) is True
    assert evaluate({"contains": ["az3", {"get_param": "zones"}]}) is False
    assert "expected [value, [value1" in error_of({"contains": ["a"]}).message
    assert "must be a list" in error_of({"contains": ["a", 3]}).message


def test_make_url_escapes_its_parts() -> None:
    snippet = {
        "make_url": {
            "scheme": "https",
            "username": "us er",
            "password": "p@ss",
            "host": "fd00::5",
            "port": 8443,
            "path": "/a b",
            "query": {"q": "x/y z"},
            "fragment": "top",
        }
    }
    assert evaluate(snippet) == "https://us%20er:p%40ss@[fd00::5]:8443/a%20b?q=x/y+z#top"
    assert evaluate({"make_url": {"scheme": "http", "host": {"get_attr": ["server", "name"]}}}) == (
        "http://server-1"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"port": 70000}, "expected 1-65535"),
        ({"port": "http"}, "invalid port"),
        ({"query": "a=b"}, "query must be a map"),
        ({"host": 3}, "host must be a string"),
        ({"hostname": "x"}, "unknown key(s) hostname"),
        ({"scheme": "http:"}, "must not contain ':'"),
        (["http"], "expected a map with keys among"),
    ],
)
def test_make_url_errors(args: Any, message: str) -> None:
    assert message in error_of({"make_url": args}).message


# -- conditions and if ---------------------------------------------------------------------------


def test_if_picks_the_branch_of_a_named_condition() -> None:
    snippet = {"if": ["is_prod", "big", "small"]}
    assert evaluate(snippet) == "big"
    assert evaluate(snippet, env="dev") == "small"


def test_if_takes_a_boolean_or_a_condition_expression() -> None:
    assert evaluate({"if": [True, 1, 2]}) == 1
    assert evaluate({"if": [{"not": "is_prod"}, 1, 2]}) == 2
    assert evaluate({"if": [{"get_param": "flag"}, "on", "off"]}, flag="no") == "off"
    equals = {"equals": [{"get_param": "count"}, 3]}
    assert evaluate({"if": [equals, "three", "other"]}, count="3") == "three"


def test_two_argument_if_removes_the_enclosing_item() -> None:
    snippet = {
        "items": ["a", {"if": ["never", "b"]}, "c"],
        "entry": {"if": ["never", "x"]},
        "kept": {"if": ["is_prod", "y"]},
    }
    assert evaluate(snippet) == {"items": ["a", "c"], "kept": "y"}
    assert evaluate({"if": ["never", "x"]}) is None, "a removed output value is null"


def test_two_argument_if_needs_2021_04_16() -> None:
    error = error_of({"if": ["never", "x"]}, "2018-08-31")
    assert error.where == "outputs.result.value: if", error
    assert "expected [condition, value_if_true, value_if_false]" in error.message


def test_if_needs_2016_10_14() -> None:
    assert "if needs heat_template_version 2016-10-14" in (
        error_of({"if": [True, 1, 2]}, "2016-04-08").message
    )


def test_if_with_unknown_condition_names_it() -> None:
    error = error_of({"if": ["is_pord", 1, 2]})
    assert "unknown condition 'is_pord'" in error.message, error
    assert "did you mean 'is_prod'" in error.message, error


def test_if_condition_must_be_a_name_boolean_or_condition_function() -> None:
    assert "expected a condition name, a boolean or a condition function" in (
        error_of({"if": [{"get_param": "count"}, 1, 2]}).message
    )
    assert "get_resource is not allowed in a condition" in (
        error_of({"if": [{"get_resource": "server"}, 1, 2]}).message
    )


def test_condition_functions_are_rejected_outside_conditions() -> None:
    error = error_of({"equals": [1, 1]})
    assert "equals is a condition function" in error.message, error


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"equals": [{"get_param": "env"}, "prod"]}, True),
        ({"not": {"equals": [1, 2]}}, True),
        ({"and": ["is_prod", True, {"not": "never"}]}, True),
        ({"and": ["is_prod", "never"]}, False),
        ({"or": ["never", False]}, False),
        ({"or": ["never", "is_prod"]}, True),
        ({"contains": ["az1", {"get_param": "zones"}]}, True),
    ],
)
def test_condition_functions_in_if(expression: Any, expected: bool) -> None:
    assert evaluate({"if": [expression, True, False]}) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"equals": [1]}, "expected [value_1, value_2]"),
        ({"and": ["is_prod"]}, "at least two conditions"),
        ({"or": "is_prod"}, "at least two conditions"),
        ({"not": None}, "expected a condition"),
        ({"not": 3}, "expected a condition name, a boolean"),
        ({"and": ["is_prod", "nope"]}, "unknown condition 'nope'"),
    ],
)
def test_condition_function_argument_errors(expression: Any, message: str) -> None:
    assert message in error_of({"if": [expression, 1, 2]}).message


def test_false_branch_references_are_not_evaluated() -> None:
    snippet = {"if": ["never", {"get_attr": ["server", "name"]}, "fallback"]}
    definition = StackDefinition(template(snippet), {}, IDENTITY)
    assert definition.resolve_outputs({})["result"] == "fallback", (
        "no data is needed for a reference in the branch that was not taken"
    )


# -- unsupported, removed and unknown functions ----------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "name"),
    [
        ({"yaql": {"expression": "$.data", "data": {}}}, "yaql"),
        ({"resource_facade": "metadata"}, "resource_facade"),
    ],
)
def test_unsupported_functions_say_so(snippet: Any, name: str) -> None:
    error = error_of(snippet)
    assert error.where == f"outputs.result.value: {name}", error
    assert f"{name} is not supported by Convergence" in error.message, error


def test_get_file_gives_the_text_of_a_file_of_the_files_map() -> None:
    files = {"script.sh": "#!/bin/sh\necho hi\n"}
    document = template({"list_join": ["", ["x", "# end"]]}).raw
    document["outputs"]["result"]["value"]["list_join"][1][0] = {"get_file": "script.sh"}
    parsed = Template.parse(document, files=files)
    definition = StackDefinition(parsed, {}, IDENTITY)
    assert definition.resolve_outputs({})["result"] == "#!/bin/sh\necho hi\n# end"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("missing.sh", "no file 'missing.sh' in the stack's spec.files (files: script.sh)"),
        (["script.sh"], "expected the name of a file of the stack's spec.files"),
    ],
)
def test_get_file_of_no_file_is_an_error_naming_the_path(argument: Any, message: str) -> None:
    document = template("x").raw
    document["outputs"]["result"]["value"] = {"get_file": argument}
    with pytest.raises(TemplateError) as caught:
        Template.parse(document, files={"script.sh": "x"})
    assert caught.value.where == "outputs.result.value: get_file", caught.value
    assert caught.value.message == message, caught.value


@pytest.mark.parametrize(
    ("snippet", "version", "removed_in"),
    [
        ({"Ref": "server"}, "2014-10-16", "2014-10-16"),
        ({"Fn::Join": [",", ["a"]]}, LATEST, "2014-10-16"),
        ({"Fn::Select": [0, ["a"]]}, "2015-10-15", "2015-10-15"),
    ],
)
def test_cfn_functions_removed_from_hot_say_what_to_use(
    snippet: Any, version: str, removed_in: str
) -> None:
    error = error_of(snippet, version)
    assert f"was removed in heat_template_version {removed_in}" in error.message, error
    assert "use " in error.message, error


def test_cfn_functions_of_2013_05_23() -> None:
    old = "2013-05-23"
    assert evaluate({"Ref": "server"}, old) == "server-ref"
    assert evaluate({"Ref": "name"}, old) == "web"
    assert evaluate({"Fn::Join": ["-", ["a", "b"]]}, old) == "a-b"
    assert evaluate({"Fn::Split": [",", "a,b"]}, old) == ["a", "b"]
    assert evaluate({"Fn::Replace": [{"%x%": "1"}, "v=%x%"]}, old) == "v=1"
    assert evaluate({"Fn::Base64": "text"}, old) == "text"
    assert evaluate({"Fn::Select": [1, ["a", "b"]]}, old) == "b"
    assert evaluate({"Fn::Select": ["k", {"k": "v"}]}, old) == "v"
    assert evaluate({"Fn::Select": [5, ["a"]]}, old) == ""
    assert evaluate({"Fn::Select": [0, '["j"]']}, "2015-04-30") == "j"
    assert evaluate({"get_attr": ["server", "networks", "private", 0]}, old) == "10.0.0.5"
    assert "Fn::GetAZs is not supported" in error_of({"Fn::GetAZs": ""}, old).message


def test_unknown_single_key_maps_are_plain_data() -> None:
    assert evaluate({"Fn::GetAtt": ["server", "name"]}) == {"Fn::GetAtt": ["server", "name"]}
    assert evaluate({"image": "cirros"}) == {"image": "cirros"}


def test_every_function_of_2021_04_16_is_rejected_before_its_version() -> None:
    introduced = {
        "repeat": "2015-04-30",
        "digest": "2015-04-30",
        "str_split": "2015-10-15",
        "map_merge": "2016-04-08",
        "map_replace": "2016-10-14",
        "if": "2016-10-14",
        "filter": "2017-02-24",
        "str_replace_strict": "2017-02-24",
        "make_url": "2017-09-01",
        "list_concat": "2017-09-01",
        "list_concat_unique": "2017-09-01",
        "str_replace_vstrict": "2017-09-01",
        "contains": "2017-09-01",
    }
    for name, since in introduced.items():
        before = HOT_VERSIONS[HOT_VERSIONS.index(since) - 1]
        document: dict[str, Any] = {
            "heat_template_version": before,
            "outputs": {"result": {"value": {name: []}}},
        }
        with pytest.raises(TemplateError, match=f"needs heat_template_version {since}"):
            Template.parse(document)


def test_nested_errors_name_the_full_path() -> None:
    snippet = {"list_join": [",", [{"str_split": [",", "a", "x"]}]]}
    error = error_of(snippet)
    assert error.where == "outputs.result.value.list_join[1][0]: str_split", error


# -- less common paths ---------------------------------------------------------------------------


def test_names_that_depend_on_resources_are_rejected() -> None:
    from_attr = {"get_attr": ["server", "name"]}
    assert "the parameter name and path must not depend on resources" in (
        error_of({"get_param": ["config", from_attr]}).message
    )
    assert "the resource name must not depend on other resources" in (
        error_of({"get_resource": from_attr}).message
    )
    assert "the attribute name must not depend on other resources" in (
        error_of({"get_attr": ["server", from_attr]}).message
    )


def test_names_computed_from_parameters_are_checked_when_bound() -> None:
    computed = {"list_join": ["", ["na", "m"]]}
    error = error_of({"get_param": computed})
    assert "unknown parameter 'nam'" in error.message, error
    error = error_of({"if": [{"get_param": "name"}, 1, 2]}, name="is_pro")
    assert "unknown condition 'is_pro'" in error.message, error
    assert evaluate({"if": [{"get_param": "name"}, 1, 2]}, name="never") == 2


def test_str_replace_params_computed_from_a_parameter_must_be_a_map() -> None:
    snippet = {"str_replace": {"template": "x", "params": {"get_param": "zones"}}}
    assert "params must be a map" in error_of(snippet).message
    empty_key = {"str_replace": {"template": "x", "params": {"": "y"}}}
    assert "a param key must not be empty" in error_of(empty_key).message


def test_str_split_of_null_is_null() -> None:
    assert evaluate({"str_split": [",", {"get_attr": ["server", "missing"]}]}) is None


def test_digest_of_text_outside_latin_1_uses_utf_8() -> None:
    assert evaluate({"digest": ["sha256", "€"]}) == hashlib.sha256("€".encode()).hexdigest()
    assert evaluate({"digest": ["md5", "é"]}) == hashlib.md5("é".encode("latin-1")).hexdigest()


def test_repeat_over_null_gives_nothing_and_nested_templates_are_copied() -> None:
    null = {"repeat": {"for_each": {"%x%": {"get_attr": ["server", "missing"]}}, "template": "%x%"}}
    assert evaluate(null) == []
    nested = {"repeat": {"for_each": {"%x%": ["a"]}, "template": [["%x%", 1, None]]}}
    assert evaluate(nested) == [[["a", 1, None]]]
    assert "non-empty map" in error_of({"repeat": {"for_each": {}, "template": "x"}}).message


def test_filter_and_contains_edge_cases() -> None:
    assert evaluate({"filter": [[1], []]}) == []
    assert evaluate({"contains": ["ell", "hello"]}) is True
    assert "only a string can be in a string" in error_of({"contains": [1, "hello"]}).message


def test_make_url_accepts_bracketed_ipv6_hosts() -> None:
    assert evaluate({"make_url": {"scheme": "http", "host": "[::1]", "port": "80"}}) == (
        "http://[::1]:80"
    )


def test_malformed_if_shows_both_forms_in_2021_04_16() -> None:
    error = error_of({"if": ["is_prod"]})
    assert "[condition, value_if_true, value_if_false] or [condition, value_if_true]" in (
        error.message
    )


def test_cfn_function_errors() -> None:
    old = "2013-05-23"
    assert "expected a string to split" in error_of({"Fn::Split": [",", ["a"]]}, old).message
    assert "the delimiter must be a non-empty string" in (
        error_of({"Fn::Split": ["", "a"]}, old).message
    )
    assert "expected a list or map (or its JSON)" in (
        error_of({"Fn::Select": [0, "not json"]}, old).message
    )
    assert "the index into a map must be a string" in (
        error_of({"Fn::Select": [0, {"a": 1}]}, old).message
    )
    assert "the index must be an integer" in error_of({"Fn::Select": ["x", [1]]}, old).message
    assert "expected a list or map" in error_of({"Fn::Select": [0, 5]}, old).message
    assert evaluate({"Fn::Select": [0, {"get_attr": ["server", "missing"]}]}, old) == ""
    assert "expected a string" in error_of({"Fn::Base64": ["x"]}, old).message
    assert "expected a resource or parameter name" in error_of({"Ref": ["x"]}, old).message
    assert "unknown parameter 'nothing'" in error_of({"Ref": "nothing"}, old).message
