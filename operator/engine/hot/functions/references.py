"""HOT functions that read a parameter or another resource: `get_param`, `get_resource`,
`get_attr` (the last two are what a resource requires, and are resolved per worker step)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convergence.operator.engine.hot.errors import describe_value
from convergence.operator.engine.hot.functions.snippets import (
    BindingScope,
    Function,
    ResourceOutputs,
    TemplateNames,
    bind_snippet,
    did_you_mean,
    json_copy,
    render_snippet,
    resolve_snippet,
    version_at_least,
)


class GetParam(Function):
    """`get_param: name` or `get_param: [name, key_or_index, ...]`: a parameter value.

    A path that does not exist gives "" (as in Heat).
    """

    FORM = "name or [name, key/index, ...]"

    def _literal_name(self) -> str | None:
        if isinstance(self.args, str):
            return self.args
        if isinstance(self.args, list) and self.args and isinstance(self.args[0], str):
            return self.args[0]
        return None

    def check_arguments(self) -> None:
        if isinstance(self.args, Function):
            return
        if isinstance(self.args, list):
            if not self.args:
                raise self.fail(f"expected a parameter {self.FORM}, got an empty list")
            if not isinstance(self.args[0], (str, Function)):
                raise self.fail(
                    f"the parameter name must be a string, got {describe_value(self.args[0])}"
                )
        elif not isinstance(self.args, str) or not self.args:
            raise self.fail(f"expected a parameter {self.FORM}, got {describe_value(self.args)}")

    def check_names(self, names: TemplateNames) -> None:
        name = self._literal_name()
        if name is not None and name not in names.parameters:
            raise self.fail(f"unknown parameter {name!r}" + did_you_mean(name, names.parameters))

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        args, dynamic = bind_snippet(self.args, scope)
        if dynamic:
            raise self.fail("the parameter name and path must not depend on resources")
        if isinstance(args, str):
            name, path = args, []
        elif isinstance(args, list) and args and isinstance(args[0], str):
            name, path = args[0], args[1:]
        else:
            raise self.fail(f"expected a parameter {self.FORM}, got {describe_value(args)}")
        return select_parameter_path(scope.parameter(name, self.where), path), False


def select_parameter_path(value: Any, path: list[Any]) -> Any:
    """Follow keys and indices (digit strings index lists) into a parameter value; "" if absent."""
    for key in path:
        if isinstance(value, Mapping):
            if not isinstance(key, str) or key not in value:
                return ""
            value = value[key]
        elif isinstance(value, (list, str)):
            try:
                index = int(key)
                value = value[index]
            except (TypeError, ValueError, IndexError):
                return ""
        else:
            return ""
    return value


def select_attribute_path(value: Any, path: list[Any]) -> Any:
    """Follow map keys and list indices into an attribute value; None if absent (as in Heat)."""
    for key in path:
        indexable = isinstance(value, (list, str)) and isinstance(key, int)
        if not (isinstance(value, Mapping) or indexable):
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


class ResourceReference(Function):
    """A call that needs the data of another resource: get_resource and get_attr."""

    @property
    def resource_name(self) -> str:
        """The referenced resource (bound or literal calls only)."""
        name = self.args[0] if isinstance(self.args, list) else self.args
        assert isinstance(name, str)
        return name

    def is_literal(self) -> bool:
        """Whether the resource (and attribute) names are written out, needing no binding."""
        raise NotImplementedError

    def bound_reference(self, scope: BindingScope) -> ResourceReference:
        """This call with its names bound (itself when they are literal); checks that the
        resource is enabled. Enough for dependencies, not for resolution."""
        if self.is_literal():
            scope.check_reference(self.resource_name, self.where)
            return self
        bound, _ = self.bind(scope)
        assert isinstance(bound, ResourceReference)
        return bound

    def _check_literal_resource(self, name: Any, names: TemplateNames) -> None:
        if isinstance(name, str) and name not in names.resources:
            raise self.fail(f"unknown resource {name!r}" + did_you_mean(name, names.resources))

    def _bound_resource(self, name: Any, scope: BindingScope) -> str:
        if isinstance(name, Function):
            raise self.fail("the resource name must not depend on other resources")
        if not isinstance(name, str):
            raise self.fail(f"the resource name must be a string, got {describe_value(name)}")
        scope.check_reference(name, self.where)
        return name

    def outputs(self, data: Mapping[str, ResourceOutputs]) -> ResourceOutputs:
        """The data of the referenced resource (an error if it has not arrived)."""
        name = self.resource_name
        try:
            return data[name]
        except KeyError:
            raise self.fail(
                f"no data for resource {name!r}: it must be complete before this is resolved"
            ) from None


class GetResource(ResourceReference):
    """`get_resource: name`: the reference id of a resource (also CFN `Ref` to a resource)."""

    def check_arguments(self) -> None:
        if not isinstance(self.args, (str, Function)) or not self.args:
            raise self.fail(f"expected a resource name, got {describe_value(self.args)}")

    def check_names(self, names: TemplateNames) -> None:
        self._check_literal_resource(self.args, names)

    def is_literal(self) -> bool:
        return isinstance(self.args, str)

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        name, _ = bind_snippet(self.args, scope)
        return self.rebound(self._bound_resource(name, scope)), True

    def resolve(self, data: Mapping[str, ResourceOutputs]) -> Any:
        return self.outputs(data).reference_id


class GetAttr(ResourceReference):
    """`get_attr: [resource, attribute, path...]`; `[resource]` alone gives all attributes
    as a map (2015-10-15 and later). A path element that does not exist gives None."""

    def _form(self) -> str:
        if version_at_least(self.version, "2015-10-15"):
            return "[resource_name] or [resource_name, attribute_name, (path...)]"
        return "[resource_name, attribute_name, (path...)]"

    def check_arguments(self) -> None:
        minimum = 1 if version_at_least(self.version, "2015-10-15") else 2
        if not isinstance(self.args, list) or len(self.args) < minimum:
            raise self.fail(f"expected {self._form()}, got {describe_value(self.args)}")
        for position, label in ((0, "resource name"), (1, "attribute name")):
            if len(self.args) > position and not isinstance(self.args[position], (str, Function)):
                raise self.fail(
                    f"the {label} must be a string, got {describe_value(self.args[position])}"
                )

    def check_names(self, names: TemplateNames) -> None:
        self._check_literal_resource(self.args[0], names)

    def is_literal(self) -> bool:
        return isinstance(self.args[0], str) and (
            len(self.args) < 2 or isinstance(self.args[1], str)
        )

    @property
    def attribute_name(self) -> str | None:
        """The top-level attribute (None for all attributes; bound or literal calls only)."""
        if len(self.args) < 2:
            return None
        attribute = self.args[1]
        assert isinstance(attribute, str)
        return attribute

    @property
    def attribute_path(self) -> list[Any]:
        """The path below the attribute (may still hold functions; bound calls only)."""
        return list(self.args[2:])

    def bind(self, scope: BindingScope) -> tuple[Any, bool]:
        args, _ = bind_snippet(self.args, scope)
        if not isinstance(args, list) or not args:
            raise self.fail(f"expected {self._form()}, got {describe_value(args)}")
        minimum = 1 if version_at_least(self.version, "2015-10-15") else 2
        if len(args) < minimum:
            raise self.fail(f"expected {self._form()}, got {describe_value(render_snippet(args))}")
        resource = self._bound_resource(args[0], scope)
        if resource is not args[0]:
            args = [resource, *args[1:]]
        if len(args) > 1:
            if isinstance(args[1], Function):
                raise self.fail("the attribute name must not depend on other resources")
            if not isinstance(args[1], str):
                raise self.fail(
                    f"the attribute name must be a string, got {describe_value(args[1])}"
                )
        return self.rebound(args), True

    def resolve(self, data: Mapping[str, ResourceOutputs]) -> Any:
        attributes = self.outputs(data).attributes
        attribute = self.attribute_name
        if attribute is None:
            return json_copy(dict(attributes))
        path = resolve_snippet(self.attribute_path, data)
        return json_copy(select_attribute_path(attributes.get(attribute), path))
