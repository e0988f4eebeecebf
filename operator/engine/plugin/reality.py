"""The physical world a resource type acts on, and the time it reads.

`Reality` holds named physical records: in memory in the simulator,
ConfigMaps in the Kubernetes operator. `Clock` is wall time in the operator
and virtual time in the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Clock(Protocol):
    """Where time comes from: wall time in the operator, virtual time in the simulator."""

    def now(self) -> float:
        """Seconds since an arbitrary, fixed origin."""
        ...


@dataclass(frozen=True)
class PhysicalRecord:
    """One physical resource as Reality holds it.

    `properties` are the properties it was last given, `attributes` what it
    exposes; `stack` and `logical_name` say whose it is (labels on a ConfigMap).
    """

    name: str
    stack: str
    logical_name: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


class Reality(Protocol):
    """The physical world a resource type acts on: named physical records."""

    def create(self, record: PhysicalRecord) -> None:
        """Create a record; replace it if one with that name exists (creates are retried)."""
        ...

    def get(self, name: str) -> PhysicalRecord | None:
        """The record called `name`, if any."""
        ...

    def update(self, record: PhysicalRecord) -> None:
        """Overwrite the record called `record.name`."""
        ...

    def delete(self, name: str) -> None:
        """Delete the record called `name`; nothing happens if there is none."""
        ...
