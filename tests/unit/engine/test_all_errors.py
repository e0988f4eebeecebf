"""A template with several mistakes reports every one, each at its own path."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from convergence.operator.engine.definitions import template_definitions
from convergence.operator.engine.hot.errors import TemplateError, TemplateErrors
from convergence.operator.engine.hot.template import Template
from convergence.operator.engine.plugin import ResourceType, StackRef, TypeRegistry
from convergence.operator.engine.store import TemplateRevision
from convergence.operator.testing import hot


class Plain(ResourceType):
    attributes_schema: ClassVar[dict[str, str]] = {"output": "what it holds"}


class Open(ResourceType):
    any_attribute: ClassVar[bool] = True


TYPES = TypeRegistry({"Test::Plain": Plain, "Test::Open": Open})


def errors_of(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> list[str]:
    """Every error the operator's loader reports for `template`, as 'where: message'."""
    revision = TemplateRevision("r1", "s", template, parameters or {}, {})
    with pytest.raises(TemplateError) as raised:
        template_definitions(revision, StackRef("s", "id"), TYPES, None)
    error = raised.value
    return [str(e) for e in (error.errors if isinstance(error, TemplateErrors) else [error])]


def test_three_mistakes_are_reported_together_each_with_its_path() -> None:
    template = hot.template(
        {
            "web": {"type": "Test::Plain", "properties": {"image": {"get_param": "imge"}}},
            "db": {"type": "OS::Nova::Server"},
            "app": {"type": "Test::Plain", "properties": {"x": {"get_attr": ["web", "outptu"]}}},
        },
        parameters={"image": {"type": "string", "default": "nginx"}},
    )
    errors = errors_of(template)
    assert len(errors) == 3, errors
    assert errors[0].startswith("resources.web.properties.image: get_param: unknown parameter")
    assert errors[1] == "resources.db.type: unknown resource type 'OS::Nova::Server'"
    assert errors[2].startswith(
        "resources.app.properties.x: get_attr: unknown attribute 'outptu' of resource 'web'"
    )


def test_each_bad_parameter_value_is_reported() -> None:
    template = hot.template(
        {},
        parameters={
            "port": {"type": "number"},
            "name": {"type": "string", "constraints": [{"length": {"min": 3}}]},
            "size": {"type": "string"},
        },
    )
    errors = errors_of(template, {"port": "eighty", "name": "ab", "extra": 1})
    wheres = [error.split(":")[0] for error in errors]
    assert wheres == ["parameters.extra", "parameters.port", "parameters.name", "parameters.size"]


def test_a_bad_call_inside_another_is_reported_once() -> None:
    template = hot.template(
        {
            "a": {
                "type": "Test::Plain",
                "properties": {
                    "x": {"str_replace": {"template": {"get_param": "nope"}, "params": {}}},
                    "y": {"list_join": [",", {"get_resource": "missing"}]},
                },
            }
        }
    )
    errors = errors_of(template)
    assert len(errors) == 2, errors
    assert errors[0].startswith("resources.a.properties.x.str_replace.template: get_param")
    assert errors[1].startswith("resources.a.properties.y.list_join[1]: get_resource: unknown")


def test_declaration_errors_and_resource_errors_come_together() -> None:
    template = hot.template(
        {"a": {"type": "Test::Plain", "depends_on": "b", "properties": {"v": {"get_param": "p"}}}},
        parameters={"p": {"type": "strng"}},
        outputs={"o": {"valu": 1}},
    )
    errors = errors_of(template)
    assert [e.split(":")[0] for e in errors] == [
        "parameters.p.type",
        "resources.a.depends_on",
        "outputs.o",
    ], errors


def test_an_open_type_answers_any_attribute() -> None:
    template = hot.template(
        {
            "obj": {"type": "Test::Open"},
            "user": {"type": "Test::Plain", "properties": {"x": {"get_attr": ["obj", "spec"]}}},
        },
        outputs={"o": {"value": {"get_attr": ["user", "output"]}}},
    )
    revision = TemplateRevision("r1", "s", template, {}, {})
    definition = template_definitions(revision, StackRef("s", "id"), TYPES, None)
    assert set(definition.resources) == {"obj", "user"}


def test_a_cycle_is_reported_with_the_other_errors() -> None:
    template = hot.template(
        {
            "a": {"type": "Test::Plain", "depends_on": "b"},
            "b": {"type": "Test::Plain", "depends_on": "a"},
            "c": {"type": "Nope::Type"},
        }
    )
    errors = errors_of(template)
    assert errors == [
        "resources.c.type: unknown resource type 'Nope::Type'",
        "resources.a: dependency cycle: a -> b -> a",
    ]


def test_a_strict_template_raises_every_static_error_and_a_lenient_one_keeps_them() -> None:
    document = hot.template(
        {"a": {"typ": "X"}, "b": {"type": "X", "properties": {"v": {"get_param": "q"}}}}
    )
    with pytest.raises(TemplateErrors) as raised:
        Template.parse(document)
    assert len(raised.value.errors) == 3, str(raised.value)
    lenient = Template.parse(document, lenient=True)
    assert [str(e) for e in lenient.errors] == [str(e) for e in raised.value.errors]
    assert list(lenient.parsed_resources) == ["b"]
