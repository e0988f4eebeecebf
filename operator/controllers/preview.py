"""The StackPreview controller: answer a proposed change with the engine's preview, change nothing.

A StackPreview carries a Stack's spec as it would be applied (template,
parameters, parametersFrom, environment, files, filesFrom,
serviceAccountName), the Stack it is
about (`spec.stackName`; none, or one that does not exist, previews a
create) or `spec.delete`. For each new generation the controller reads the
parametersFrom and filesFrom sources exactly as the Stack controller does — as
`spec.serviceAccountName` through `kube/sources.py`, and in multi-tenant mode
not at all without one — so a preview reads nothing a Stack of the same spec
could not, and shows no value it read: only logical names, types and
property names. Then the engine's `preview` decides, on the namespace's
store, without writing to it.

The answer is the StackPreview's status: `phase` Ready with the five lists
and a summary, or Failed with the reason (`InvalidTemplate`,
`PropertiesInvalid`, `ParametersNotFound`, `ParametersForbidden`,
`FilesNotFound`, `FilesForbidden`, `OperationRefused`) and the engine's
message. A Failed preview is not tried again: it answers the spec as it was,
and a new spec (a new generation) is previewed anew.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from convergence.operator.engine import preview
from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.operations import OperationRefused
from convergence.operator.namespaces import Namespaces
from convergence.operator.parameters_from import (
    ParametersUnavailable,
    merged_files,
    merged_parameters,
)
from convergence.operator.spec import StackPreviewSpec

READY = "Ready"
FAILED = "Failed"
PREVIEWED = "Previewed"

logger = logging.getLogger("convergence.operator")


@dataclass(frozen=True)
class PreviewRequest:
    """A StackPreview as a handler was given it."""

    namespace: str
    name: str
    generation: int | None
    status: Mapping[str, Any]
    spec: StackPreviewSpec

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> PreviewRequest:
        """The request of a StackPreview's body."""
        metadata = body.get("metadata") or {}
        return cls(
            namespace=str(metadata.get("namespace")),
            name=str(metadata.get("name")),
            generation=metadata.get("generation"),
            status=dict(body.get("status") or {}),
            spec=StackPreviewSpec.of(body),
        )

    @property
    def stack(self) -> str:
        """The Stack previewed; a create that names none is previewed under the preview's name
        (what OS::stack_name gives)."""
        return self.spec.stack_name or self.name


def summary(result: preview.Preview) -> str:
    """How many resources fall in each non-empty list, e.g. "1 added, 2 unchanged"."""
    counts = [
        f"{len(getattr(result, category))} {category}"
        for category in preview.CATEGORIES
        if getattr(result, category)
    ]
    return ", ".join(counts) or "no resources"


class PreviewController:
    """Answers StackPreviews through the engine of their namespace."""

    def __init__(self, namespaces: Namespaces) -> None:
        self.namespaces = namespaces

    def reconcile(self, request: PreviewRequest, patch: MutableMapping[str, Any]) -> None:
        """Preview a generation not answered yet; `patch` collects the status to write."""
        if request.status.get("observedGeneration") == request.generation:
            return
        operation, answer = self._answer(request)
        patch.update(
            {
                "observedGeneration": request.generation,
                "stack": request.stack,
                "operation": operation,
                **answer,
            }
        )
        logger.info(
            "preview %s of stack %s: %s (%s)",
            request.name,
            request.stack,
            answer["phase"],
            answer["message"],
        )

    def _answer(self, request: PreviewRequest) -> tuple[str, dict[str, Any]]:
        """(operation, the status fields of the answer)."""
        spec = request.spec
        engine = self.namespaces.engine(request.namespace)
        if spec.delete:
            return "delete", _ready(preview.preview_delete(engine, request.stack))
        named = spec.stack_name is not None
        operation = "update" if named and engine.store.get_stack(request.stack) else "create"
        try:
            parameters = merged_parameters(
                spec.parameters,
                spec.parameters_from,
                lambda kind, source: self.namespaces.sources(request.namespace).read(
                    spec.service_account_name, kind, source
                ),
            )
            files = merged_files(
                spec.files,
                spec.files_from,
                lambda kind, source: self.namespaces.sources(request.namespace).read(
                    spec.service_account_name, kind, source, "filesFrom"
                ),
            )
            # Without a Stack named, a create even where a Stack of the preview's name exists.
            previewing = preview.preview_update if operation == "update" else preview.preview_create
            result = previewing(
                engine,
                request.stack,
                dict(spec.template or {}),
                parameters,
                spec.environment,
                files,
            )
        except ParametersUnavailable as exc:
            return operation, _failed(exc.reason, str(exc))
        except TemplateError as exc:
            # TemplateError messages never carry a hidden parameter's value (the engine masks it).
            return operation, _failed("InvalidTemplate", str(exc))
        except preview.PropertiesInvalid as exc:
            return operation, _failed("PropertiesInvalid", str(exc))
        except OperationRefused as exc:
            return operation, _failed("OperationRefused", str(exc))
        return operation, _ready(result)


def _ready(result: preview.Preview) -> dict[str, Any]:
    return {
        "phase": READY,
        "reason": PREVIEWED,
        "message": summary(result),
        "summary": summary(result),
        **result.to_dict(),
    }


def _failed(reason: str, message: str) -> dict[str, Any]:
    empty: dict[str, Any] = {category: [] for category in preview.CATEGORIES}
    return {"phase": FAILED, "reason": reason, "message": message, "summary": "", **empty}
