"""Kubernetes objects as a stack may touch them: the plugin API's ObjectClient on the real API.

`KubernetesObjects` (the engine's `ObjectClients`, one per namespace) gives
each stack a `StackObjects` client. Its requests are made:
- impersonating `system:serviceaccount:<namespace>:<name>` when the Stack's
  `spec.serviceAccountName` names a ServiceAccount (the API server adds the
  groups system:serviceaccounts, system:serviceaccounts:<namespace> and
  system:authenticated itself), so that ServiceAccount's RBAC decides and the
  stack is not confined to its namespace;
- else with the operator's own identity, confined to the Stack's namespace.
  With `require_service_account` (the `--require-service-account` flag,
  multi-tenant mode) a stack without one fails every request instead.
The Stack's serviceAccountName is read with the operator's identity and kept
for `SERVICE_ACCOUNT_TTL` seconds, so a change takes effect within that time.
A name that is not an object name (`other-namespace:admin`) is refused: the
impersonated user is always a ServiceAccount of the Stack's own namespace.
No stack object may be of the operator's own kinds (`kube/reserved.py`),
whatever the identity.

Kinds are mapped to resources by discovery (`/api/v1`, `/apis/<group>/<version>`)
with the operator's identity, cached per group version; a kind the cache does
not know triggers one fresh look (a CRD installed meanwhile), at most every
`DISCOVERY_RETRY` seconds per group version.

Applies are server-side applies under the field manager `convergence`;
deletes are in the background, optionally with a uid precondition. The uid of
a StackResource (for owner references) is read once and kept: it never
changes. Refusals become `ObjectRejected` naming the object.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from convergence.operator.engine.plugin import (
    ObjectConflict,
    ObjectImmutable,
    ObjectRef,
    ObjectRejected,
    ResourceFailure,
    Unavailable,
)
from convergence.operator.kube.api import (
    APPLY_PATCH,
    FIELD_MANAGER,
    ApiError,
    FencedApiClient,
    if_present,
    is_conflict,
    is_invalid,
    is_not_found,
    is_unavailable,
    request,
)
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    STACK_RESOURCES,
    STACKS,
    VERSION,
    is_object_name,
)
from convergence.operator.kube.reserved import reserved_kind

SERVICE_ACCOUNT_TTL = 10.0
DISCOVERY_RETRY = 10.0


@dataclass(frozen=True)
class ApiResource:
    """One kind as discovery describes it."""

    group_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The URL path of the collection, or of one object when `name` is given."""
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        tail = f"/{name}" if name else ""
        return f"{base}{scope}/{self.plural}{tail}"


class Discovery:
    """apiVersion + kind -> resource, from the API's discovery documents, cached."""

    def __init__(self, api: ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, dict[str, ApiResource]] = {}
        self._looked_at: dict[str, float] = {}

    def _load(self, group_version: str) -> dict[str, ApiResource]:
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        listed = if_present(request, self._api, "GET", path)
        if listed is None:
            return {}
        kinds: dict[str, ApiResource] = {}
        for resource in listed.get("resources", []):
            if "/" in resource["name"]:
                continue  # a subresource (status, scale...)
            kinds[resource["kind"]] = ApiResource(
                group_version, resource["name"], bool(resource["namespaced"])
            )
        return kinds

    def resource(self, api_version: str, kind: str) -> ApiResource:
        """The resource serving `kind` in `api_version`; ResourceFailure if there is none."""
        with self._lock:
            known = self._kinds.get(api_version, {}).get(kind)
            looked_at = self._looked_at.get(api_version)
        if known is not None:
            return known
        if looked_at is None or self._clock() - looked_at >= DISCOVERY_RETRY:
            kinds = self._load(api_version)
            with self._lock:
                self._kinds[api_version] = kinds
                self._looked_at[api_version] = self._clock()
            known = kinds.get(kind)
        if known is None:
            raise ResourceFailure(f"the API serves no kind {kind!r} in {api_version!r}")
        return known


def _ref_of(manifest: Mapping[str, Any], resource: ApiResource) -> ObjectRef:
    metadata = manifest.get("metadata") or {}
    return ObjectRef(
        str(manifest["apiVersion"]),
        str(manifest["kind"]),
        str(metadata["namespace"]) if resource.namespaced else None,
        str(metadata["name"]),
    )


# Longer API messages (an Invalid one may dump the whole object) keep their start and end.
_MESSAGE_MAX = 400


# How the API words an Invalid change of a field that is fixed at creation.
_IMMUTABLE_WORDS = (
    "immutable",  # most: "field is immutable"
    "may not change once set",  # a Service's clusterIP(s)
    "updates to statefulset spec for fields other than",  # a StatefulSet's selector etc.
)


def _rejected(ref: ObjectRef, verb: str, exc: ApiError) -> ObjectRejected | Unavailable:
    """The plugin API's exception for a refusal: the two a type acts on by their own class.

    An answer that the API could not answer now is no refusal: `Unavailable`.
    """
    message = exc.message
    if len(message) > _MESSAGE_MAX:
        half = _MESSAGE_MAX // 2
        message = f"{message[:half]} ... {message[-half:]}"
    text = f"cannot {verb} {ref}: {message}"
    if is_unavailable(exc):
        return Unavailable(text)
    if is_conflict(exc):
        return ObjectConflict(text, exc.reason)
    lowered = text.lower()
    if is_invalid(exc) and any(words in lowered for words in _IMMUTABLE_WORDS):
        return ObjectImmutable(text, exc.reason)
    return ObjectRejected(text, exc.reason)


class StackObjects:
    """The ObjectClient of one stack (see the module for whose identity it uses)."""

    def __init__(self, owner: KubernetesObjects, stack: str) -> None:
        self._owner = owner
        self.stack = stack

    @property
    def namespace(self) -> str:
        return self._owner.namespace

    @property
    def confined(self) -> bool:
        return self._owner.service_account(self.stack) is None

    def _api(self) -> ApiClient:
        return self._owner.client_for(self._owner.service_account(self.stack))

    def _resource(self, api_version: str, kind: str) -> ApiResource:
        refusal = reserved_kind(api_version, kind)
        if refusal is not None:
            raise ResourceFailure(refusal)
        return self._owner.discovery.resource(api_version, kind)

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return self._resource(api_version, kind).namespaced

    def apply(
        self, manifest: Mapping[str, Any], *, force: bool = True, dry_run: bool = False
    ) -> dict[str, Any]:
        resource = self._resource(str(manifest["apiVersion"]), str(manifest["kind"]))
        ref = _ref_of(manifest, resource)
        query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER), ("force", force)]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            return request(
                self._api(),
                "PATCH",
                resource.path(ref.namespace, ref.name),
                query=query,
                body=dict(manifest),
                content_type=APPLY_PATCH,
            )
        except ApiError as exc:
            raise _rejected(ref, "apply", exc) from None

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        resource = self._resource(ref.api_version, ref.kind)
        try:
            return request(self._api(), "GET", resource.path(ref.namespace, ref.name))
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise _rejected(ref, "read", exc) from None

    def delete(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        resource = self._resource(ref.api_version, ref.kind)
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            request(self._api(), "DELETE", resource.path(ref.namespace, ref.name), body=options)
        except ApiError as exc:
            # Gone, or (a failed uid precondition) another incarnation: not ours to delete.
            if is_not_found(exc) or is_conflict(exc):
                return
            raise _rejected(ref, "delete", exc) from None

    def owner_reference(self, record_id: str) -> dict[str, Any] | None:
        uid = self._owner.record_uid(record_id)
        if uid is None:
            return None
        return {
            "apiVersion": API_VERSION,
            "kind": "StackResource",
            "name": record_id,
            "uid": uid,
        }


class KubernetesObjects:
    """The engine's ObjectClients in one namespace: a StackObjects per stack."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        require_service_account: bool = False,
        *,
        discovery: Discovery | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.require_service_account = require_service_account
        self.discovery = discovery or Discovery(api, clock)
        self._clock = clock
        self._lock = threading.Lock()
        self._service_accounts: dict[str, tuple[str | None, float]] = {}
        self._clients: dict[str, ApiClient] = {}
        self._record_uids: dict[str, str] = {}

    def for_stack(self, stack: str) -> StackObjects:
        return StackObjects(self, stack)

    def service_account(self, stack: str) -> str | None:
        """The Stack's spec.serviceAccountName (cached briefly); ResourceFailure when one is
        required and missing."""
        with self._lock:
            cached = self._service_accounts.get(stack)
        if cached is not None and self._clock() - cached[1] < SERVICE_ACCOUNT_TTL:
            name = cached[0]
        else:
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{STACKS}/{stack}"
            body = if_present(request, self.api, "GET", path) or {}
            name = (body.get("spec") or {}).get("serviceAccountName") or None
            if name is not None and not is_object_name(str(name)):
                raise ResourceFailure(
                    f"spec.serviceAccountName {name!r} is not the name of a ServiceAccount "
                    f"of namespace {self.namespace!r}: nothing is applied"
                )
            with self._lock:
                self._service_accounts[stack] = (name, self._clock())
        if name is None and self.require_service_account:
            raise ResourceFailure(
                f"stack {stack!r} names no spec.serviceAccountName, and this operator "
                "requires one (--require-service-account): nothing is applied"
            )
        return name

    def client_for(self, service_account: str | None) -> ApiClient:
        """The operator's client, or one impersonating the namespace's ServiceAccount."""
        if service_account is None:
            return self.api
        with self._lock:
            client = self._clients.get(service_account)
            if client is None:
                client = FencedApiClient(configuration=self.api.configuration)
                client.set_default_header(  # type: ignore[no-untyped-call]
                    "Impersonate-User",
                    f"system:serviceaccount:{self.namespace}:{service_account}",
                )
                self._clients[service_account] = client
        return client

    def record_uid(self, record_id: str) -> str | None:
        """The uid of the StackResource `record_id` (None if it is gone)."""
        with self._lock:
            known = self._record_uids.get(record_id)
        if known is not None:
            return known
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{STACK_RESOURCES}/{record_id}"
        body = if_present(request, self.api, "GET", path)
        if body is None:
            return None
        uid = str(body["metadata"]["uid"])
        with self._lock:
            self._record_uids[record_id] = uid
        return uid
