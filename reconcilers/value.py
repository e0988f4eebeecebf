"""OS::Heat::Value: exposes its `value` property as the attribute `value`, typed if asked.

Heat's semantics: `value` is required and may be anything; `type` (string,
number, comma_delimited_list, json, boolean) is optional, and when given the
value is checked and coerced as a template parameter of that type is (`"3"`
becomes 3 as a number, `"a,b"` becomes ["a", "b"] as a comma_delimited_list,
`"yes"` true as a boolean, a JSON text a map or list as json). A value that
does not fit fails the resource with a message saying what was expected. Both
properties change in place. The reference id is the physical name; nothing
physical exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from convergence.operator.engine.plugin import (
    UPDATE_ALLOWED,
    Cookie,
    ParameterValueError,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
    coerce_value,
)

ValueType = Literal["string", "number", "comma_delimited_list", "json", "boolean"]


class ValueProperties(PropertiesModel):
    """Properties of OS::Heat::Value; both update in place."""

    value: Any = Field(
        ...,
        description='The expression to generate the "value" attribute.',
        json_schema_extra=UPDATE_ALLOWED,
    )
    type: ValueType | None = Field(
        None, description='The type of the "value" property.', json_schema_extra=UPDATE_ALLOWED
    )


class Value(ResourceType):
    """A resource which exposes its value property as an attribute."""

    Properties: ClassVar[type[PropertiesModel]] = ValueProperties
    attributes_schema: ClassVar[dict[str, str]] = {
        "value": 'The value of the "value" property, coerced to "type" when given.'
    }
    has_physical_resource: ClassVar[bool] = False

    @classmethod
    def validate_properties(cls, raw: Mapping[str, Any]) -> PropertiesModel:
        properties = super().validate_properties(raw)
        assert isinstance(properties, ValueProperties)
        if properties.value is None:
            raise ResourceFailure("Property error: value: Property value not assigned")
        if properties.type is None:
            return properties
        try:
            coerced = coerce_value(properties.type, properties.value)
        except ParameterValueError as exc:
            raise ResourceFailure(
                f"Property error: value: not a valid {properties.type}: {exc}"
            ) from None
        return properties.model_copy(update={"value": coerced})

    def create(self) -> Cookie:
        self.context.resource_id = self.context.physical_name()
        return None

    def get_attribute(self, name: str) -> Any:
        if name == "value":
            assert isinstance(self.properties, ValueProperties)
            return self.properties.value
        return None
