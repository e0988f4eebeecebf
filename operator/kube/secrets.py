"""The plugin API's SecretStore as Secrets: one per entry, owned by its StackResource.

OS::Heat::RandomString keeps its string here, never in status. Each entry is
a Secret in the stack's namespace named after the entry (the type's physical
name, made a valid object name as for ConfigMapReality's ConfigMaps, the exact
name kept in an annotation), labelled like those ConfigMaps (stack, logical
resource, managed-by, and the StackResource's record id), with an
ownerReference to the StackResource: deleting the record (or the whole Stack)
lets the garbage collector take the Secret along if the type's delete did not
already. `release` (deletion_policy Retain) removes that ownerReference and the
stack's labels, so the Secret outlives its stack.

Writes are server-side applies with the field manager `convergence`, so a
write retried after a crash overwrites the Secret it made. Reads check the
annotations: a Secret that is not ours, or whose shortened name belongs to
another entry, is no entry.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any, cast

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, V1Secret

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RESOURCE_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    ResourceFailure,
    StoredSecret,
    label_value,
)
from convergence.operator.kube.api import (
    APPLY_PATCH,
    FIELD_MANAGER,
    MERGE_PATCH,
    if_present,
    unless_absent,
)
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    STACK_RESOURCES,
    VERSION,
)
from convergence.operator.kube.reality import (
    PHYSICAL_NAME_ANNOTATION,
    RESOURCE_ANNOTATION,
    STACK_ANNOTATION,
    configmap_name,
)

STACK_RESOURCE_KIND = "StackResource"


def secret_name(entry: str) -> str:
    """The name of the Secret that holds the entry `entry` (as a ConfigMap's would be)."""
    return configmap_name(entry)


class KubernetesSecretStore:
    """Entries of the SecretStore as Secrets in one namespace."""

    def __init__(self, api_client: ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._core = CoreV1Api(api_client)
        self._objects = CustomObjectsApi(api_client)
        # Record id -> StackResource uid: a record is never made again under its id.
        self._uids: dict[str, str] = {}
        self._uids_lock = threading.Lock()

    def _owner_reference(self, record_id: str) -> dict[str, Any]:
        with self._uids_lock:
            uid = self._uids.get(record_id)
        if uid is None:
            body = if_present(
                self._objects.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                STACK_RESOURCES,
                record_id,
            )
            if body is None:
                raise ResourceFailure(
                    f"StackResource {record_id} is gone; its Secret would be orphaned"
                )
            uid = str(cast(dict[str, Any], body)["metadata"]["uid"])
            with self._uids_lock:
                self._uids[record_id] = uid
        return {
            "apiVersion": API_VERSION,
            "kind": STACK_RESOURCE_KIND,
            "name": record_id,
            "uid": uid,
            # The record's finalizer deletes the Secret first when it can; the
            # garbage collector is the fallback, never a blocker of the record.
            "blockOwnerDeletion": False,
        }

    def write(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        stack: str,
        logical_name: str,
        record_id: str,
    ) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name(name),
                "labels": {
                    STACK_LABEL: label_value(stack),
                    RESOURCE_LABEL: label_value(logical_name),
                    MANAGED_BY_LABEL: MANAGED_BY,
                    STACK_RESOURCE_LABEL: label_value(record_id),
                },
                "annotations": {
                    PHYSICAL_NAME_ANNOTATION: name,
                    STACK_ANNOTATION: stack,
                    RESOURCE_ANNOTATION: logical_name,
                },
                "ownerReferences": [self._owner_reference(record_id)],
            },
            "data": {
                key: base64.b64encode(value.encode("utf-8")).decode("ascii")
                for key, value in data.items()
            },
        }
        self._core.patch_namespaced_secret(
            secret_name(name),
            self.namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    def _read(self, name: str) -> V1Secret | None:
        secret = if_present(self._core.read_namespaced_secret, secret_name(name), self.namespace)
        if secret is None:
            return None
        annotations = (secret.metadata.annotations if secret.metadata else None) or {}
        if annotations.get(PHYSICAL_NAME_ANNOTATION) != name:
            return None  # not ours, or another entry's shortened name
        return secret

    def read(self, name: str) -> StoredSecret | None:
        secret = self._read(name)
        if secret is None:
            return None
        metadata = secret.metadata
        labels = (metadata.labels if metadata else None) or {}
        annotations = (metadata.annotations if metadata else None) or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or STACK_LABEL not in labels:
            return None  # released (Retain): no stack's any more
        return StoredSecret(
            name=name,
            stack=annotations.get(STACK_ANNOTATION, ""),
            logical_name=annotations.get(RESOURCE_ANNOTATION, ""),
            data={
                key: base64.b64decode(value).decode("utf-8")
                for key, value in (secret.data or {}).items()
            },
        )

    def delete(self, name: str) -> None:
        if self._read(name) is None:
            return
        unless_absent(self._core.delete_namespaced_secret, secret_name(name), self.namespace)

    def locate(self, name: str) -> str:
        return secret_name(name)

    def release(self, name: str) -> None:
        if self._read(name) is None:
            return
        # A merge patch: null removes a key. The apply that made the Secret owns
        # these fields, so a later apply would put them back; none comes, the
        # record is dropped right after.
        patch = {
            "metadata": {
                "ownerReferences": None,
                "labels": {STACK_LABEL: None, STACK_RESOURCE_LABEL: None, RESOURCE_LABEL: None},
            }
        }
        unless_absent(
            self._core.patch_namespaced_secret,
            secret_name(name),
            self.namespace,
            patch,
            _content_type=MERGE_PATCH,
        )
