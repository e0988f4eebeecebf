"""The Stack admission check: refuse at `kubectl apply` what the engine would refuse later.

The API server sends every CREATE and UPDATE of a Stack to the operator's
validating webhook (handlers.py; the chart's ValidatingWebhookConfiguration).
The check is the engine's own loader (`engine.definitions.template_definitions`),
the one the Stack controller runs when it starts a traversal: the template is
parsed and bound to the spec's parameters and environment, types and the
attributes `get_attr` names are looked up in the operator's TypeRegistry,
each type judges its own definition where it is known (`engine.type_checks`:
e.g. a ResourceGroup's count, index_var, removal_policies, update_policy),
and on UPDATE immutable parameters are compared with the old object's. Every
error is reported, each at its path (`resources.web.properties.image:
get_param: unknown parameter 'imge'`).

What stays on the status path (the Stack's Failed condition and an Event):
- a Stack with `spec.filesFrom`, whole: its files (template resources'
  templates, what get_file reads) are read only by the running operator;
- values from `spec.parametersFrom`: only the running operator reads those
  ConfigMaps and Secrets, as the Stack's identity, so a Stack that has any is
  checked here for its template alone (parsing, names, functions), and its
  parameter values, constraints, types and cycles when the operator starts it;
- whatever comes from the cluster when a traversal runs (RBAC, objects, quotas).

An UPDATE that leaves the spec as it was (metadata, finalizers, annotations
such as cancel or rollback) is always allowed, so that a Stack stored before
the webhook existed can still be deleted or annotated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from convergence.operator.controllers import Rejected
from convergence.operator.engine.definitions import Definition, template_definitions
from convergence.operator.engine.hot.errors import TemplateError, TemplateErrors
from convergence.operator.engine.hot.template import Template
from convergence.operator.engine.plugin import StackRef, TypeRegistry
from convergence.operator.engine.store import TemplateRevision
from convergence.operator.engine.type_checks import check_types
from convergence.operator.spec import StackSpec

# What OS::stack_id gives while a Stack is checked (the engine's id comes with its first traversal).
REVIEW_STACK_ID = "admission-review"

logger = logging.getLogger("convergence.operator")


class StackAdmission:
    """Reviews Stacks for the validating webhook with the operator's resource types."""

    def __init__(self, types: TypeRegistry) -> None:
        self.types = types

    def review(
        self, operation: str, body: Mapping[str, Any], old: Mapping[str, Any] | None
    ) -> None:
        """Allow the request, or raise Rejected saying every error of the Stack's template."""
        if operation not in ("CREATE", "UPDATE"):
            return
        metadata = body.get("metadata") or {}
        if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
            return
        if metadata.get("deletionTimestamp"):
            return
        name = str(metadata.get("name") or metadata.get("generateName") or "stack")
        namespace = str(metadata.get("namespace") or "")
        try:
            spec = StackSpec.of(body)
            if spec.files_from:
                # Files the running operator reads may hold the template resources'
                # templates and what get_file names: all of it is checked then.
                return
            if spec.parameters_from:
                Template.parse(dict(spec.template or {}), files=spec.files)
                return
            previous = self._previous(old, name, namespace) if operation == "UPDATE" else None
            self._definition(spec, name, namespace, previous)
        except TemplateError as exc:
            raise Rejected(f"invalid template:{_listed(exc)}") from exc

    def _definition(
        self, spec: StackSpec, name: str, namespace: str, previous: Definition | None
    ) -> Definition:
        revision = TemplateRevision(
            REVIEW_STACK_ID,
            name,
            dict(spec.template or {}),
            dict(spec.parameters or {}),
            dict(spec.environment or {}),
            dict(spec.files or {}),
        )
        definition = template_definitions(
            revision, StackRef(name, REVIEW_STACK_ID), self.types, previous, project_id=namespace
        )
        check_types(definition, self.types)
        return definition

    def _previous(
        self, old: Mapping[str, Any] | None, name: str, namespace: str
    ) -> Definition | None:
        """The old object's definition, for immutable parameters (None when it has none:
        parametersFrom values, or a template that was invalid already)."""
        if old is None:
            return None
        spec = StackSpec.of(old)
        if spec.parameters_from or spec.files_from:
            return None
        try:
            return self._definition(spec, name, namespace, None)
        except TemplateError:
            return None


def _listed(error: TemplateError) -> str:
    """One error on the line; several each on a line of its own (kubectl prints them so)."""
    if isinstance(error, TemplateErrors):
        return "".join(f"\n- {one}" for one in error.errors)
    return f" {error}"
