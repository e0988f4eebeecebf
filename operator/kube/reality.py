"""Reality on Kubernetes: one ConfigMap per physical resource, so anyone can see it with kubectl.

OS::Heat::TestResource (and any type built the same way) keeps its physical
resource in the `Reality` of the plugin API. In the operator that is a
ConfigMap in the stack's namespace, holding the properties the resource was
last given and the attributes it exposes as JSON under the keys `properties`
and `attributes`, labelled with the stack, the logical name and, when the
StackResource can be found, the StackResource (record id). It is deleted when
the physical resource is (the resource type's delete), not with the
StackResource: a `Retain` deletion policy keeps it.

Physical names become ConfigMap names unchanged when they are valid object
names; otherwise a lowercase form with a hash of the name, the exact name
being kept in an annotation. Creates and updates are server-side applies, so a
create retried after a crash finds the ConfigMap it made and overwrites it,
never making a second one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, V1ConfigMap

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RESOURCE_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    PhysicalRecord,
    label_value,
    short_id,
)
from convergence.operator.engine.record_ids import readable_part
from convergence.operator.kube.api import APPLY_PATCH, FIELD_MANAGER, if_present, unless_absent
from convergence.operator.kube.cache import ObjectCache
from convergence.operator.kube.names import (
    GROUP,
    STACK_RESOURCES,
    VERSION,
    subdomain_name,
)

PHYSICAL_NAME_ANNOTATION = f"{GROUP}/physical-name"
STACK_ANNOTATION = f"{GROUP}/stack"
RESOURCE_ANNOTATION = f"{GROUP}/resource"
PROPERTIES_KEY = "properties"
ATTRIBUTES_KEY = "attributes"


def configmap_name(physical_name: str) -> str:
    """The name of the ConfigMap that holds the physical resource `physical_name`."""
    return subdomain_name(physical_name)


def _as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class ConfigMapReality:
    """The plugin API's Reality as ConfigMaps in one namespace."""

    def __init__(
        self, api_client: ApiClient, namespace: str, cache: ObjectCache | None = None
    ) -> None:
        self.namespace = namespace
        # StackResources as the operator's watch last saw them: looked at before a LIST.
        self.cache = cache
        self._core = CoreV1Api(api_client)
        self._objects = CustomObjectsApi(api_client)
        # Physical name -> record id: a physical name is made from its record's id,
        # so the answer never changes and may be kept.
        self._record_ids: dict[str, str] = {}
        self._record_ids_lock = threading.Lock()

    def _record_id(self, record: PhysicalRecord) -> str | None:
        """The id of the StackResource whose physical resource this is, if it can be found.

        PhysicalRecord does not carry the record id; the physical name ends with
        the record's short id (`ResourceContext.physical_name`), so the one
        StackResource of that stack and logical name with that short id is it.
        """
        with self._record_ids_lock:
            known = self._record_ids.get(record.name)
        if known is not None:
            return known
        if self.cache is not None:
            # The id that readable naming gives (engine/record_ids.py), looked up at
            # once; scanning the stack's records for each resource cost O(n²) in all.
            suffix = record.name.rsplit("-", 1)[-1]
            named = f"{readable_part(record.stack, record.logical_name)}-{suffix}"
            body = self.cache.get(STACK_RESOURCES, named)
            found = None if body is None else self._match(record, [body])
            if found is not None:
                return found
            found = self._match(record, self.cache.resources_of(record.stack))
            if found is not None:
                return found
        selector = (
            f"{STACK_LABEL}={label_value(record.stack)},"
            f"{RESOURCE_LABEL}={label_value(record.logical_name)}"
        )
        listed = self._objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, STACK_RESOURCES, label_selector=selector
        )
        items = listed.get("items", []) if isinstance(listed, dict) else []
        return self._match(record, items)

    def _match(self, record: PhysicalRecord, items: Iterable[Mapping[str, Any]]) -> str | None:
        """The id of the StackResource among `items` whose physical resource this is."""
        for item in items:
            record_id = str(item["metadata"]["name"])
            try:
                suffix = f"-{short_id(record_id)}"
            except ValueError:  # not a record id: no physical name ends with a short id of it
                continue
            if item["spec"]["stack"] == record.stack and record.name.endswith(suffix):
                with self._record_ids_lock:
                    self._record_ids[record.name] = record_id
                return record_id
        return None

    def _apply(self, record: PhysicalRecord) -> None:
        labels = {
            STACK_LABEL: label_value(record.stack),
            RESOURCE_LABEL: label_value(record.logical_name),
            MANAGED_BY_LABEL: MANAGED_BY,
        }
        record_id = self._record_id(record)
        if record_id is not None:
            labels[STACK_RESOURCE_LABEL] = label_value(record_id)
        name = configmap_name(record.name)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    PHYSICAL_NAME_ANNOTATION: record.name,
                    STACK_ANNOTATION: record.stack,
                    RESOURCE_ANNOTATION: record.logical_name,
                },
            },
            "data": {
                PROPERTIES_KEY: _as_json(dict(record.properties)),
                ATTRIBUTES_KEY: _as_json(dict(record.attributes)),
            },
        }
        self._core.patch_namespaced_config_map(
            name,
            self.namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    def create(self, record: PhysicalRecord) -> None:
        """Create the ConfigMap, or overwrite the one a crashed earlier try made."""
        self._apply(record)

    def update(self, record: PhysicalRecord) -> None:
        """Overwrite the ConfigMap of `record.name` (made if missing, as in memory)."""
        self._apply(record)

    def get(self, name: str) -> PhysicalRecord | None:
        configmap = if_present(
            self._core.read_namespaced_config_map, configmap_name(name), self.namespace
        )
        if configmap is None:
            return None
        record = _physical_record(configmap)
        # A shortened name could be shared by two physical names; the annotation decides.
        return record if record is not None and record.name == name else None

    def delete(self, name: str) -> None:
        unless_absent(self._core.delete_namespaced_config_map, configmap_name(name), self.namespace)

    def of_stack(self, stack: str) -> list[PhysicalRecord]:
        """Every physical resource of a stack, by name."""
        listed = self._core.list_namespaced_config_map(
            self.namespace, label_selector=f"{STACK_LABEL}={label_value(stack)}"
        )
        records = [_physical_record(item) for item in listed.items]
        return sorted(
            (r for r in records if r is not None and r.stack == stack), key=lambda r: r.name
        )


def _physical_record(configmap: V1ConfigMap) -> PhysicalRecord | None:
    annotations = (configmap.metadata.annotations if configmap.metadata else None) or {}
    if PHYSICAL_NAME_ANNOTATION not in annotations:
        return None  # not one of ours
    data = configmap.data or {}
    return PhysicalRecord(
        name=annotations[PHYSICAL_NAME_ANNOTATION],
        stack=annotations.get(STACK_ANNOTATION, ""),
        logical_name=annotations.get(RESOURCE_ANNOTATION, ""),
        properties=json.loads(data.get(PROPERTIES_KEY, "{}")),
        attributes=json.loads(data.get(ATTRIBUTES_KEY, "{}")),
    )
