"""A Stack's spec as the operator reads it: one pydantic model, the only reader of `spec.*`.

The CRD (crds/convergence.dev_stacks.yaml) validates a spec before the API
stores it; this model names its fields in Python, with the CRD's defaults, so
that a default or a unit (timeoutMinutes) is decided in one place. The
template, parameters and environment stay mappings: the engine validates
those itself, with messages about the template rather than the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Template revisions kept beyond those in use, unless spec.revisionHistoryLimit says.
REVISION_HISTORY_LIMIT = 10


class StackSpec(BaseModel):
    """`spec` of a Stack (fields by their CRD names in camelCase)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    template: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    # ConfigMaps and Secrets to read parameters from (see parameters_from.py).
    parameters_from: list[dict[str, Any]] | None = None
    environment: dict[str, Any] | None = None
    # Heat's files map: file name -> text, for get_file and template resources.
    files: dict[str, str] | None = None
    # ConfigMaps and Secrets to read files from, under `files` (see parameters_from.py).
    files_from: list[dict[str, Any]] | None = None
    # As in Heat, a failed create or update is rolled back only when this is false.
    disable_rollback: bool = True
    timeout_seconds: int | None = None
    timeout_minutes: int | None = None
    revision_history_limit: int = REVISION_HISTORY_LIMIT
    # The ServiceAccount whose identity applies the stack's Kubernetes objects.
    service_account_name: str | None = None
    repair_drift: bool = True

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> StackSpec:
        """The spec of a Stack's body."""
        return cls.model_validate(dict(body.get("spec") or {}))

    @property
    def timeout(self) -> float | None:
        """Seconds each operation of the stack may take (None: no limit)."""
        if self.timeout_seconds:
            return float(self.timeout_seconds)
        if self.timeout_minutes:
            return float(self.timeout_minutes) * 60
        return None


class StackPreviewSpec(StackSpec):
    """`spec` of a StackPreview: a Stack's spec as it would be applied, and which Stack.

    The Stack fields mean what they mean on a Stack (parametersFrom read as
    `serviceAccountName`); those that change no resource (timeouts, rollback,
    drift) are read and ignored, so that a Stack's spec can be copied as it is.
    """

    # The Stack of the namespace the change is for (None: a create).
    stack_name: str | None = None
    # Preview deleting the Stack instead.
    delete: bool = False

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> StackPreviewSpec:
        """The spec of a StackPreview's body."""
        return cls.model_validate(dict(body.get("spec") or {}))
