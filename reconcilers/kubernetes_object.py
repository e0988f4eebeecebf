"""Kubernetes::Object: any Kubernetes object, built-in or custom, as a stack resource.

Properties:
- `manifest` (required, updatable): the object as `kubectl apply` takes it,
  with `apiVersion`, `kind`, `metadata` and whatever else the kind has. It is
  applied by server-side apply under the field manager `convergence` (force:
  the stack is authoritative for the fields it sets). `metadata.generateName`
  is refused (a retried create would make a second object).
- `timeout` (seconds, default 600, updatable): how long a create or update
  waits for the object to be ready before the resource fails, naming what it
  waited for.

Names and namespaces:
- With `metadata.name` the object has that fixed name. Without it the name is
  generated per resource version: `<stack>-<resource>-<short id>`, made a
  DNS-1123 label (lowercase, at most 63 characters, starting with a letter,
  so Services accept it too) and ending with the record's short id.
- A namespaced object goes to `metadata.namespace`, by default the Stack's.
- Confinement: a stack without `spec.serviceAccountName` may only touch
  namespaced objects in its own namespace; a cluster-scoped kind or another
  namespace fails the create/update before anything is created. A stack that
  names a ServiceAccount acts as that ServiceAccount (impersonated), so its
  RBAC decides, cluster scope and other namespaces included.
- Whatever the identity, the operator's own kinds (anything in the
  `convergence.dev` API group, ControllerRevisions) are refused by the object
  client, and so are labels, annotations and owner references under
  `convergence.dev/` in the manifest: the operator finds its records and
  revisions by them, so a stack could otherwise forge another stack's state.

What the stack adds to every object: the labels `app.kubernetes.io/managed-by:
convergence`, `app.kubernetes.io/part-of: <stack>`, the stack, resource and
StackResource labels (`convergence.dev/...`), and an ownerReference to the
resource's StackResource when the object is namespaced and in the Stack's
namespace (Kubernetes allows no other owner references).

Readiness (kstatus conventions: `kubernetes_readiness.py`) is polled by
check_create/update_complete. While it waits, `waitingFor` in the
StackResource's plugin data says for what.

Attributes: `name` and `uid`, and any top-level field of the live object
(`metadata`, `spec`, `status`, `data`, ...), so `get_attr: [db, status,
loadBalancer, ingress, 0, ip]` follows the path into the live object. A
Secret's `data`/`stringData` are never attributes (attributes are stored in
status): reference the Secret by name instead. `get_resource` gives the name.

Replacement (the engine replaces when `needs_replace` says so):
- a change of kind, API group, namespace or name; a change of the API version
  within the group is an update in place;
- a change the API refuses as immutable (e.g. a Job's template, a Service's
  clusterIP): found by a dry-run apply before the update.
With a generated name the replacement is create-before-delete: the new object
has a new name, and the old one is deleted by the old record's cleanup. With a
fixed name it is delete-first: the engine has no such mode, so the new
record's create finds the previous version of this resource (same stack and
resource labels, another StackResource) at the name, deletes it, waits until
it is gone, then applies. The old record's cleanup then finds an object that
is not its own and leaves it alone (deletes only the uid it created). Which
one applies is in plugin data `replacement` (`create-before-delete` or
`delete-first`). An object at a fixed name that is not this stack's is never
taken over: the create fails. A rollback to the old version of a delete-first
replacement finds its object gone; drift repair recreates it.

Deletion: the object this record created (by uid), in the background, then
waits until it is gone. `deletion_policy: Retain` keeps it: the `retain` hook
re-applies the manifest without the stack's labels and owner reference, which
server-side apply removes, so the StackResource's deletion does not
garbage-collect it.

Drift repair (`repair_drift`): the live object is compared with the applied
manifest by applying it again without force: a field that another manager took
is a conflict, a field changed otherwise bumps the resourceVersion of an
otherwise no-op apply; either way the manifest is applied (forced) again. A
deleted object is recreated (new uid, recorded). An object at the name that is
no longer this record's is reported and left alone.

Without a Kubernetes API (the simulator) every action fails with a clear message.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator

from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OPERATOR_PREFIX,
    RESOURCE_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    UPDATE_ALLOWED,
    Cookie,
    ObjectClient,
    ObjectConflict,
    ObjectImmutable,
    ObjectRef,
    PropertiesModel,
    ResourceFailure,
    ResourceType,
    label_value,
    short_id,
)
from convergence.reconcilers.kubernetes_readiness import api_group, readiness, section

PART_OF_LABEL = "app.kubernetes.io/part-of"
DEFAULT_TIMEOUT = 600.0
CREATE_BEFORE_DELETE = "create-before-delete"
DELETE_FIRST = "delete-first"
# The longest name every kind accepts (a DNS-1123 label: Services, Namespaces...).
_NAME_MAX = 63
# Top-level fields that are never attributes of a Secret (attributes end up in status).
_SECRET_FIELDS = frozenset({"data", "stringData"})


class KubernetesObjectProperties(PropertiesModel):
    """Properties of Kubernetes::Object."""

    manifest: dict[str, Any] = Field(
        description="The object: apiVersion, kind, metadata and the rest of it.",
        json_schema_extra=UPDATE_ALLOWED,
    )
    timeout: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        description="Seconds a create or update waits for the object to be ready.",
        json_schema_extra=UPDATE_ALLOWED,
    )

    @field_validator("manifest")
    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any]) -> dict[str, Any]:
        problem = manifest_problem(manifest)
        if problem is not None:
            raise ValueError(problem)
        return manifest


def manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """What is wrong with a manifest's identifying fields, if anything."""
    for key in ("apiVersion", "kind"):
        value = manifest.get(key)
        if not isinstance(value, str) or not value:
            return f"{key} must be a non-empty string"
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, Mapping):
        return "metadata must be an object"
    for key in ("name", "namespace"):
        if key in metadata and (not isinstance(metadata[key], str) or not metadata[key]):
            return f"metadata.{key} must be a non-empty string"
    if "generateName" in metadata:
        return "metadata.generateName is not supported (without metadata.name a name is generated)"
    for key in ("labels", "annotations"):
        if key in metadata and not isinstance(metadata[key], Mapping):
            return f"metadata.{key} must be an object"
        reserved = sorted(k for k in metadata.get(key) or {} if str(k).startswith(OPERATOR_PREFIX))
        if reserved:
            return (
                f"metadata.{key}.{reserved[0]}: keys under {OPERATOR_PREFIX} are the operator's "
                "own (it finds its records and revisions by them), a stack may not set them"
            )
    owners = metadata.get("ownerReferences", [])
    if not isinstance(owners, list):
        return "metadata.ownerReferences must be a list"
    for owner in owners:
        if isinstance(owner, Mapping) and str(owner.get("apiVersion", "")).startswith(
            OPERATOR_PREFIX
        ):
            return (
                f"metadata.ownerReferences: {owner.get('kind')} {owner.get('name')!r} is one of "
                "the operator's own objects; only the operator sets such owners"
            )
    return None


# -- names, identity, confinement (pure) ------------------------------------------------------


def generated_name(stack: str, resource: str, record_id: str) -> str:
    """`<stack>-<resource>-<short id>` as a DNS-1123 label starting with a letter."""
    suffix = short_id(record_id)
    room = _NAME_MAX - len(suffix) - 1
    base = re.sub(r"[^a-z0-9]+", "-", f"{stack}-{resource}".lower()).strip("-")
    if not base[:1].isalpha():
        base = f"r-{base}".rstrip("-")
    return f"{base[:room].rstrip('-')}-{suffix}"


def _metadata(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return section(manifest, "metadata")


def object_ref(manifest: Mapping[str, Any], default_name: str, namespace: str | None) -> ObjectRef:
    """Where the manifest's object is: its name or `default_name`; for a namespaced kind
    (`namespace` not None: the default) its namespace or the default."""
    metadata = _metadata(manifest)
    return ObjectRef(
        api_version=str(manifest["apiVersion"]),
        kind=str(manifest["kind"]),
        namespace=str(metadata.get("namespace") or namespace) if namespace is not None else None,
        name=str(metadata.get("name") or default_name),
    )


def confinement_problem(ref: ObjectRef, namespace: str) -> str | None:
    """Why a stack confined to `namespace` may not touch `ref` (None: it may)."""
    rule = (
        f"a stack without spec.serviceAccountName may only manage objects in its own "
        f"namespace {namespace!r}"
    )
    if ref.namespace is None:
        return f"{ref} is cluster-scoped: {rule}"
    if ref.namespace != namespace:
        return f"{ref} is in another namespace: {rule}"
    return None


def identity_change(
    before: Mapping[str, Any], after: Mapping[str, Any], default_namespace: str
) -> str | None:
    """What makes `after` another object than `before` (kind, API group, name, namespace)."""
    if before.get("kind") != after.get("kind"):
        return "kind"
    if api_group(str(before.get("apiVersion"))) != api_group(str(after.get("apiVersion"))):
        return "API group"
    old, new = _metadata(before), _metadata(after)
    if old.get("name") != new.get("name"):
        return "name"
    if (old.get("namespace") or default_namespace) != (new.get("namespace") or default_namespace):
        return "namespace"
    return None


def stack_labels(stack: str, resource: str, record_id: str) -> dict[str, str]:
    """The labels that tie an object to its stack, resource and record."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        PART_OF_LABEL: label_value(stack),
        STACK_LABEL: label_value(stack),
        RESOURCE_LABEL: label_value(resource),
        STACK_RESOURCE_LABEL: label_value(record_id),
    }


def desired_manifest(
    manifest: Mapping[str, Any],
    ref: ObjectRef,
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The manifest as applied: named and placed as `ref`, with `labels` and `owner` added."""
    desired = copy.deepcopy(dict(manifest))
    metadata = dict(_metadata(desired))
    metadata["name"] = ref.name
    if ref.namespace is None:
        metadata.pop("namespace", None)
    else:
        metadata["namespace"] = ref.namespace
    if labels:
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    if owner is not None:
        others = [
            o for o in metadata.get("ownerReferences") or [] if o.get("uid") != owner.get("uid")
        ]
        metadata["ownerReferences"] = [*others, dict(owner)]
    desired["metadata"] = metadata
    return desired


def _labels(live: Mapping[str, Any]) -> Mapping[str, Any]:
    return _metadata(live).get("labels") or {}


def _uid(live: Mapping[str, Any]) -> str | None:
    uid = _metadata(live).get("uid")
    return str(uid) if uid else None


# -- the type -----------------------------------------------------------------------------------


class KubernetesObject(ResourceType):
    """Any Kubernetes object, applied server-side with the stack's identity."""

    Properties: ClassVar[type[PropertiesModel]] = KubernetesObjectProperties
    # What `get_attr: [resource]` gives; any other top-level field can be named too.
    attributes_schema: ClassVar[dict[str, str]] = {
        "name": "The object's name (also what get_resource gives).",
        "uid": "The object's uid.",
        "apiVersion": "The live object's apiVersion.",
        "kind": "The live object's kind.",
        "metadata": "The live object's metadata.",
        "spec": "The live object's spec.",
        "status": "The live object's status.",
    }
    any_attribute: ClassVar[bool] = True

    _live: dict[str, Any] | None = None

    @property
    def props(self) -> KubernetesObjectProperties:
        """The properties of the action at hand, typed."""
        assert isinstance(self.properties, KubernetesObjectProperties)
        return self.properties

    # -- helpers -------------------------------------------------------------------------------

    def _objects(self) -> ObjectClient:
        if self.context.objects is None:
            raise ResourceFailure(
                "Kubernetes::Object needs a Kubernetes API, and this engine has none "
                "(e.g. the simulator)"
            )
        return self.context.objects

    def _default_name(self) -> str:
        return generated_name(self.context.stack.name, self.context.name, self.context.record_id)

    def _target(self) -> ObjectRef:
        """Where the manifest's object goes; ResourceFailure if the stack may not go there."""
        objects = self._objects()
        manifest = self.props.manifest
        namespaced = objects.is_namespaced(str(manifest["apiVersion"]), str(manifest["kind"]))
        ref = object_ref(manifest, self._default_name(), objects.namespace if namespaced else None)
        if objects.confined:
            problem = confinement_problem(ref, objects.namespace)
            if problem is not None:
                raise ResourceFailure(problem)
        return ref

    def _desired(self, ref: ObjectRef, *, release: bool = False) -> dict[str, Any]:
        objects = self._objects()
        if release:
            return desired_manifest(self.props.manifest, ref, {}, None)
        labels = stack_labels(self.context.stack.name, self.context.name, self.context.record_id)
        owner = (
            objects.owner_reference(self.context.record_id)
            if ref.namespace == objects.namespace
            else None
        )
        return desired_manifest(self.props.manifest, ref, labels, owner)

    def _applied_ref(self) -> tuple[ObjectRef, str | None] | None:
        """The object this record applied (from its data) and its uid, if any."""
        applied = self.context.data.get("object")
        if not isinstance(applied, Mapping):
            return None
        ref = ObjectRef(
            applied["apiVersion"], applied["kind"], applied.get("namespace"), applied["name"]
        )
        return ref, applied.get("uid")

    def _remember(self, ref: ObjectRef, uid: str | None) -> None:
        self.context.resource_id = ref.name
        self.context.data["object"] = {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            "uid": uid,
        }

    def _is_mine(self, live: Mapping[str, Any], uid: str | None) -> bool:
        """Whether `live` is the object this record made (by uid, else by its record label)."""
        if uid is not None:
            return _uid(live) == uid
        return _labels(live).get(STACK_RESOURCE_LABEL) == label_value(self.context.record_id)

    def _is_previous_version(self, live: Mapping[str, Any]) -> bool:
        """Whether `live` is another record's object of this same stack resource."""
        labels = _labels(live)
        return (
            labels.get(STACK_LABEL) == label_value(self.context.stack.name)
            and labels.get(RESOURCE_LABEL) == label_value(self.context.name)
            and labels.get(STACK_RESOURCE_LABEL) != label_value(self.context.record_id)
        )

    def _apply(self, ref: ObjectRef) -> None:
        live = self._objects().apply(self._desired(ref))
        self._live = live
        self._remember(ref, _uid(live))

    def _check_timeout(self, cookie: Cookie, waiting_for: str) -> None:
        waited = self.context.now() - float(cookie["startedAt"])
        if waited > self.props.timeout:
            raise ResourceFailure(
                f"timed out after {self.props.timeout:g}s waiting for {waiting_for}"
            )

    def _started(self) -> Cookie:
        return {"startedAt": self.context.now()}

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self) -> Cookie:
        objects = self._objects()
        ref = self._target()
        fixed = "name" in _metadata(self.props.manifest)
        self.context.data["replacement"] = DELETE_FIRST if fixed else CREATE_BEFORE_DELETE
        # Read before remembering: an identity that may not even read the object
        # applied nothing, and its record then has nothing to delete.
        live = objects.get(ref)
        self._remember(ref, None)
        if live is not None and not self._is_mine(live, None):
            if not self._is_previous_version(live):
                raise ResourceFailure(
                    f"{ref} exists already and is not managed by stack "
                    f"{self.context.stack.name!r} as {self.context.name!r}: not taking it over"
                )
            # A fixed-name replacement: the previous version goes first.
            self.context.data["previousUid"] = _uid(live)
            self.context.data["waitingFor"] = f"the previous {ref} to be deleted"
            objects.delete(ref, uid=_uid(live))
            return self._started()
        self._apply(ref)
        return self._started()

    def _poll_ready(self, cookie: Cookie) -> bool:
        objects = self._objects()
        applied = self._applied_ref()
        if applied is None:
            raise ResourceFailure("nothing was applied")
        ref, uid = applied
        previous = self.context.data.get("previousUid")
        if previous is not None:
            live = objects.get(ref)
            if live is not None and _uid(live) == previous:
                self._check_timeout(cookie, f"the previous {ref} to be deleted")
                return False
            del self.context.data["previousUid"]
            self.context.data["deletedPrevious"] = previous
            self._apply(self._target())
            ref, uid = ref, _uid(self._live or {})
        live = self._live if self._live is not None else objects.get(ref)
        if live is None or (uid is not None and _uid(live) != uid):
            raise ResourceFailure(f"{ref} was deleted while waiting for it to be ready")
        self._live = live
        state = readiness(live)
        if state.failed:
            raise ResourceFailure(f"{ref} failed: {state.message}")
        if state.ready:
            self.context.data.pop("waitingFor", None)
            return True
        self.context.data["waitingFor"] = f"{ref}: {state.message}"
        self._check_timeout(cookie, f"{ref}: {state.message}")
        return False

    def check_create_complete(self, cookie: Cookie) -> bool:
        return self._poll_ready(cookie)

    def needs_replace(self, before: PropertiesModel, changed: frozenset[str]) -> bool:
        if "manifest" not in changed or self.context.objects is None:
            return False
        assert isinstance(before, KubernetesObjectProperties)
        objects = self.context.objects
        if identity_change(before.manifest, self.props.manifest, objects.namespace) is not None:
            return True
        try:
            objects.apply(self._desired(self._target()), dry_run=True)
        except ObjectImmutable:
            return True
        except Exception:
            return False  # the update itself will say what is wrong
        return False

    def update(self, before: PropertiesModel, changed: frozenset[str]) -> Cookie:
        ref = self._target()
        try:
            self._apply(ref)
        except ObjectImmutable as exc:
            raise ResourceFailure(
                f"{exc} (the change needs a new object: it will be replaced on the next update)"
            ) from None
        return self._started()

    def check_update_complete(self, cookie: Cookie) -> bool:
        return self._poll_ready(cookie)

    def delete(self) -> Cookie:
        applied = self._applied_ref()
        if applied is None:
            return None
        objects = self._objects()
        ref, uid = applied
        live = objects.get(ref)
        if live is None or not self._is_mine(live, uid):
            # Gone, or a newer version's (fixed-name replacement): nothing of ours is left.
            return None
        objects.delete(ref, uid=_uid(live))
        return {**self._started(), "uid": _uid(live)}

    def check_delete_complete(self, cookie: Cookie) -> bool:
        if not cookie:
            return True
        applied = self._applied_ref()
        assert applied is not None
        ref, _ = applied
        live = self._objects().get(ref)
        if live is None or _uid(live) != cookie["uid"]:
            return True
        self._check_timeout(cookie, f"{ref} to be deleted")
        return False

    def retain(self) -> None:
        applied = self._applied_ref()
        if applied is None:
            return
        objects = self._objects()
        ref, uid = applied
        live = objects.get(ref)
        if live is None or not self._is_mine(live, uid):
            return
        objects.apply(self._desired(ref, release=True))

    def repair_drift(self) -> str | None:
        applied = self._applied_ref()
        if applied is None or self.context.objects is None:
            return None
        objects = self.context.objects
        ref, uid = applied
        live = objects.get(ref)
        if live is None:
            self._apply(ref)
            return f"{ref} was deleted; recreated it"
        if not self._is_mine(live, uid):
            return f"{ref} was replaced by an object this stack did not make; left it alone"
        desired = self._desired(ref)
        try:
            after = objects.apply(desired, force=False)
        except ObjectConflict as exc:
            objects.apply(desired)
            return f"{ref}: fields were changed by another manager; put them back ({exc})"
        resource_version = _metadata(live).get("resourceVersion")
        if _metadata(after).get("resourceVersion") != resource_version:
            return f"{ref} was changed; put it back"
        return None

    # -- data ------------------------------------------------------------------------------------

    def get_attribute(self, name: str) -> Any:
        applied = self._applied_ref()
        if applied is None:
            return None
        ref, _ = applied
        if name == "name":
            return ref.name
        if self._live is None:
            try:
                self._live = self._objects().get(ref)
            except ResourceFailure:
                return None
        live = self._live
        if live is None:
            return None
        if name == "uid":
            return _uid(live)
        if ref.kind == "Secret" and api_group(ref.api_version) == "" and name in _SECRET_FIELDS:
            return None
        return copy.deepcopy(live.get(name))
