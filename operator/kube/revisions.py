"""Template revisions: a ControllerRevision for the template, a Secret for its values.

A `TemplateRevision` is an immutable `ControllerRevision` named by the
revision id, owned by the Stack, `data` = {template}, numbered one more than
the stack's highest so far. Its parameters and environment (hidden
parameters, values read from Secrets) are in an immutable Secret of the same
name, owned by the Stack too, since anyone who may view a namespace may read
its ControllerRevisions. The revision of the last template that went in
service is labelled `convergence.dev/last-completed=true`, and `prune` deletes
old revisions beyond a count, so rollback and history survive restarts while
the history stays bounded.

The engine stores and reads revisions through its Store (`KubernetesStore`
hands `put` and `get` on to a `TemplateRevisions`); the operator marks and
prunes them with one of its own.
"""

from __future__ import annotations

import base64
import json
import re

from kubernetes.client import (
    V1ControllerRevision,
    V1ObjectMeta,
    V1OwnerReference,
    V1Secret,
)
from kubernetes.client.exceptions import ApiException

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STACK_LABEL,
    label_value,
)
from convergence.operator.engine.store import AlreadyExists, NotFound, TemplateRevision
from convergence.operator.kube.api import (
    TEMPLATE_WRITE,
    NamespacedApi,
    if_present,
    is_conflict,
    request,
    unless_absent,
)
from convergence.operator.kube.names import GROUP, STACK_KIND, is_object_name, object_name

# The key of a template revision's Secret holding its parameters and environment.
TEMPLATE_VALUES_KEY = "values.json"
LAST_COMPLETED_LABEL = f"{GROUP}/last-completed"

# A JSON escape sequence: an escaped backslash, or a surrogate pair (a character beyond
# the Basic Multilingual Plane, e.g. an emoji, as json.dumps writes it).
_JSON_SURROGATE_PAIR = re.compile(r"(\\\\)|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def yaml_safe_json(text: str) -> str:
    """JSON text that YAML reads the same: YAML has no surrogate escapes, so each
    surrogate pair becomes YAML's `\\UXXXXXXXX` escape of the character."""

    def escape(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _JSON_SURROGATE_PAIR.sub(escape, text)


def _owned_by(revision: V1ControllerRevision, owner: V1OwnerReference) -> bool:
    owners = (revision.metadata.owner_references if revision.metadata else None) or []
    return any(reference.uid == owner.uid for reference in owners)


class TemplateRevisions:
    """Template revisions of the stacks in one namespace (writes counted as "template")."""

    def __init__(self, api: NamespacedApi) -> None:
        self._api = api

    def _owned(self, stack: str, owner: V1OwnerReference) -> list[V1ControllerRevision]:
        """The stack's revisions (a shortened label value may be shared: the owner decides)."""
        listed = self._api.apps.list_namespaced_controller_revision(
            self._api.namespace, label_selector=f"{STACK_LABEL}={label_value(stack)}"
        )
        return [item for item in listed.items if _owned_by(item, owner)]

    def put(self, revision: TemplateRevision) -> None:
        """Store the revision as a ControllerRevision owned by its Stack (immutable by the API).

        Its `revision` number is one more than the stack's highest so far; the
        engine stores a stack's revisions one at a time (one handler per Stack),
        and two made at once would only share a number, never an id.
        """
        name = object_name(revision.id, "template revision id")
        owner = self._api.stack_owner(revision.stack)
        number = 1 + max(
            (item.revision or 0 for item in self._owned(revision.stack, owner)), default=0
        )
        labels = {STACK_LABEL: label_value(revision.stack), MANAGED_BY_LABEL: MANAGED_BY}
        values = {
            "parameters": dict(revision.parameters),
            **({"environment": dict(revision.environment)} if revision.environment else {}),
            **({"files": dict(revision.files)} if revision.files else {}),
        }
        # The values first: a revision that exists always has them. (A writer dying
        # in between leaves a Secret that goes with the Stack.)
        secret = V1Secret(
            metadata=V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            immutable=True,
            string_data={TEMPLATE_VALUES_KEY: json.dumps(values, sort_keys=True)},
        )
        body = V1ControllerRevision(
            api_version="apps/v1",
            kind="ControllerRevision",
            metadata=V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            data={"template": dict(revision.template)},
            revision=number,
        )
        try:
            self._api.core.create_namespaced_secret(self._api.namespace, secret)
            self._api.count(TEMPLATE_WRITE)
            # Sent in canonical JSON (sorted keys, no spaces), as the API server
            # re-encodes `data` when it applies a patch: stored otherwise, the
            # bytes differ after any label patch, which it refuses (data is immutable).
            # As YAML, since the client would encode a JSON string once more.
            client = self._api.client
            serialized = client.sanitize_for_serialization(body)  # type: ignore[no-untyped-call]
            canonical = yaml_safe_json(
                json.dumps(serialized, sort_keys=True, separators=(",", ":"))
            )
            request(
                client,
                "POST",
                f"/apis/apps/v1/namespaces/{self._api.namespace}/controllerrevisions",
                body=canonical,
                content_type="application/yaml",
            )
        except ApiException as exc:
            if is_conflict(exc):
                raise AlreadyExists(f"template {revision.id!r} exists") from None
            raise
        self._api.count(TEMPLATE_WRITE)

    def get(self, revision_id: str) -> TemplateRevision:
        """The revision `revision_id`; NotFound if it (or its values) is gone."""
        if not is_object_name(revision_id):
            raise NotFound(f"template {revision_id!r}")
        namespace = self._api.namespace
        stored = if_present(
            self._api.apps.read_namespaced_controller_revision, revision_id, namespace
        )
        if stored is None:
            raise NotFound(f"template {revision_id!r}")
        owners = (stored.metadata.owner_references if stored.metadata else None) or []
        stacks = [owner.name for owner in owners if owner.kind == STACK_KIND]
        if not stacks:
            raise NotFound(f"template {revision_id!r} belongs to no Stack")
        data = stored.data or {}
        values = dict(data)  # revisions stored before the values moved to a Secret
        if "parameters" not in data:
            secret = if_present(self._api.core.read_namespaced_secret, revision_id, namespace)
            if secret is None:
                raise NotFound(f"parameters of template {revision_id!r}")
            encoded = (secret.data or {}).get(TEMPLATE_VALUES_KEY, "")
            values = json.loads(base64.b64decode(encoded).decode("utf-8") or "{}")
        return TemplateRevision(
            id=revision_id,
            stack=stacks[0],
            template=dict(data.get("template") or {}),
            parameters=dict(values.get("parameters") or {}),
            environment=dict(values.get("environment") or {}),
            files=dict(values.get("files") or {}),
        )

    def prune(self, stack: str, keep: set[str], limit: int) -> list[str]:
        """Delete revisions beyond the newest `limit` that are not in use.

        `keep` are revision ids still in use (the stack's current and last
        completed templates, and any a record's action or state refers to):
        never deleted, and not counted. Returns the ids deleted.
        """
        owner = self._api.stack_owner(stack)
        revisions = sorted(
            (item for item in self._owned(stack, owner) if item.metadata is not None),
            key=lambda item: item.revision or 0,
            reverse=True,
        )
        deleted: list[str] = []
        spare = 0
        for item in revisions:
            name = str(item.metadata.name if item.metadata else "")
            if name in keep:
                continue
            spare += 1
            if spare <= limit:
                continue
            for delete in (
                self._api.apps.delete_namespaced_controller_revision,
                self._api.core.delete_namespaced_secret,
            ):
                if unless_absent(delete, name, self._api.namespace):
                    self._api.count(TEMPLATE_WRITE)
            deleted.append(name)
        return deleted

    def mark_last_completed(self, stack: str, revision_id: str | None) -> None:
        """Label the revision of the last template that went in service (and no other)."""
        selector = f"{STACK_LABEL}={label_value(stack)},{LAST_COMPLETED_LABEL}=true"
        marked = {
            str(item.metadata.name)
            for item in self._api.apps.list_namespaced_controller_revision(
                self._api.namespace, label_selector=selector
            ).items
            if item.metadata is not None
        }
        changes: dict[str, str | None] = {name: None for name in marked if name != revision_id}
        if revision_id is not None and revision_id not in marked:
            changes[revision_id] = "true"
        for name, value in changes.items():
            label = {"metadata": {"labels": {LAST_COMPLETED_LABEL: value}}}
            if unless_absent(
                self._api.apps.patch_namespaced_controller_revision,
                name,
                self._api.namespace,
                label,
            ):
                self._api.count(TEMPLATE_WRITE)
