"""OS::Heat::None: a placeholder that accepts any properties and does nothing.

It stubs out any other type through the resource_registry: every property is
accepted and ignored, so a property change never updates or replaces it (a
*type* change still replaces it, as the engine decides). Every attribute is
None, and the reference id is a UUID made at create. Nothing physical exists,
so delete has nothing to do.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from pydantic import ConfigDict

from convergence.operator.engine.plugin import Cookie, PropertiesModel, ResourceType


class AnyProperties(PropertiesModel):
    """Accepts any property and keeps none, so no change is ever seen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class NoneResource(ResourceType):
    """Enables easily disabling certain resources via the resource_registry."""

    Properties: ClassVar[type[PropertiesModel]] = AnyProperties
    has_physical_resource: ClassVar[bool] = False
    # It stands in for any type (resource_registry), so get_attr of anything gives null.
    any_attribute: ClassVar[bool] = True

    def create(self) -> Cookie:
        # Derived from the (unique) physical name rather than uuid4 so that a
        # create retried after a crash gives the same id; it is still unique
        # per resource version and opaque, like Heat's random UUID.
        self.context.resource_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.context.physical_name()))
        return None

    def get_attribute(self, name: str) -> Any:
        return None
