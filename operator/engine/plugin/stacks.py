"""Nested stacks as a resource type may make them: the one sanctioned door to child Stacks.

A nested stack (OS::Heat::Stack, later ResourceGroup and template resources)
is a stack of its own, converged by the same engine: on Kubernetes a Stack
object in the parent's namespace, owned by the parent Stack, acting with the
parent's identity (its `serviceAccountName`), so no tenant gains a right by
nesting; in the simulator a stack in the same in-memory store. A type reaches
it through `ResourceContext.stacks` (a `NestedStacks` of the parent stack),
never through the generic `ObjectClient`, which refuses the operator's own
kinds.

A child is named after the parent, the resource's logical name and the
resource record (`nested_stack_name`), so a replacement (a new record) makes
a new child while an update in place reaches the same one. `apply` returns the
generation of the child's spec; the child's state says which generation its
phase is about, so a type waits for the child to take up what it applied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from convergence.operator.engine.hot.errors import TemplateError
from convergence.operator.engine.hot.loading import json_document, load_document
from convergence.operator.engine.plugin.errors import ResourceFailure
from convergence.operator.engine.record_ids import short_id

# Child names stay within a label value (63 characters), so labels and selectors by
# stack name read them unshortened.
_NAME_MAX = 63
_SHORT_ID = 8


def nested_stack_name(parent: str, logical_name: str, record_id: str) -> str:
    """`<parent>-<resource>-<short id>`, lowercase, shortened to fit an object name and label."""
    readable = re.sub(r"[^a-z0-9-]+", "-", f"{parent}-{logical_name}".lower()).strip("-")
    readable = readable[: _NAME_MAX - _SHORT_ID - 1].strip("-")
    suffix = short_id(record_id)
    return f"{readable}-{suffix}" if readable else suffix


def template_document(template: Mapping[str, Any] | str, where: str) -> dict[str, Any]:
    """A child template as a JSON mapping, read from YAML or JSON text as the template
    language reads one (`heat_template_version: 2021-04-16` stays a string);
    ResourceFailure naming `where` when it is no mapping."""
    try:
        loaded = load_document(template) if isinstance(template, str) else template
        document = json_document(loaded, "")
    except TemplateError as exc:
        raise ResourceFailure(f"Property error: {where}: {exc}") from None
    if not isinstance(document, dict):
        raise ResourceFailure(f"Property error: {where}: a template is a mapping")
    return document


@dataclass(frozen=True)
class NestedStackState:
    """What a type sees of a child stack: its phase, reason and outputs.

    `generation` is the spec generation the phase is about (a child has not
    taken up a newer spec while it is lower than what `apply` returned).
    """

    name: str
    generation: int
    action: str
    status: str
    reason: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    # The last `NestedStacks.retry` token the child has taken up ("" for none).
    retried: str = ""

    @property
    def phase(self) -> str:
        """Heat's stack state, e.g. UPDATE_COMPLETE."""
        return f"{self.action}_{self.status}"


class NestedStacks(Protocol):
    """The child stacks of one parent stack (see the module)."""

    def apply(
        self,
        name: str,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        *,
        resource: str,
        record_id: str,
        timeout: float | None = None,
        environment: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> int:
        """Create child `name`, or update it in place, to `template` with `parameters`,
        Heat's `environment` and files map (None: what Heat gives a nested stack, from the
        parent's current template revision: its files, and its environment as
        `hot.environment.nested_environment` makes it for `resource`); return the
        generation of its spec. `resource` and `record_id` say which resource
        of the parent owns it. ResourceFailure when the child is refused (an invalid
        template, a child being deleted)."""
        ...

    def get(self, name: str) -> NestedStackState | None:
        """The child's state, or None when there is no such child (any more)."""
        ...

    def retry(self, name: str) -> str | None:
        """Ask child `name`, FAILED at the spec last applied, to converge to that spec
        again (Heat's update of a FAILED nested stack whose template is unchanged).
        Return a token that the child's state shows as `retried` once it has taken the
        request up; None when nothing is needed (an apply always converges anew)."""
        ...

    def delete(self, name: str) -> None:
        """Start deleting the child (its resources first); missing is fine."""
        ...


class NestedStackClients(Protocol):
    """Gives each stack its NestedStacks (on Engine; None where nesting is not wired)."""

    def for_stack(self, stack: str) -> NestedStacks:
        """The nested stacks of parent `stack`; cheap, and makes no request before use."""
        ...
