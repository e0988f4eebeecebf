"""Nested stacks on Kubernetes: the plugin API's NestedStacks as child Stack objects.

`KubernetesStacks` (the engine's `NestedStackClients`, one per namespace)
gives each parent stack a `ChildStacks`. A child is a Stack in the parent's
namespace, written with the operator's identity (no tenant writes Stacks
through a stack: `Kubernetes::Object` refuses the operator's kinds,
`kube/reserved.py`), and made so that nesting grants nothing:
- its `serviceAccountName` is the parent's, read at every apply, so the
  child's Kubernetes objects are applied with exactly the parent's identity
  (and a parent without one gives a child without one, confined as it is);
- it carries no `parametersFrom` nor `filesFrom`: its parameters are the
  resource's properties, its files and environment the ones its type gives, or
  else (OS::Heat::Stack, ResourceGroup) the parent's, read from the parent's
  current template revision, as Heat gives them to a nested stack;
- it is owned by the parent Stack (an ownerReference) and labelled with the
  parent, the resource and the resource record, as every object made for a
  stack is (`engine.plugin` labels); rollback is disabled, as Heat creates
  nested stacks.
The operator then converges it like any Stack (its own finalizer, traversals,
revisions), and `kubectl get stacks` shows it.

An apply is a server-side apply of the child's spec (field manager
`convergence`) whose answer gives the generation applied. A child's state is
read from its status: the phase is about the generation `observedGeneration`
names (the engine writes the phase with the traversal before the controller
writes observedGeneration). A spec the operator refused to start (an invalid
template where no webhook runs) keeps its earlier phase, so a `Failed`
condition of that generation with a not-started reason fails it too. A FAILED
child whose parent updates it with the spec unchanged (the same generation)
is asked to converge again by the retry annotation, as a user would
(`retry`); its status's `handledRetry` says when it has taken that up.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from convergence.operator.engine.hot.environment import nested_environment
from convergence.operator.engine.plugin import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RESOURCE_LABEL,
    STACK_LABEL,
    STACK_RESOURCE_LABEL,
    NestedStackState,
    ResourceFailure,
    label_value,
)
from convergence.operator.engine.store import Store
from convergence.operator.kube.api import (
    APPLY_PATCH,
    FIELD_MANAGER,
    MERGE_PATCH,
    ApiError,
    if_present,
    is_not_found,
    request,
)
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    RETRY_ANNOTATION,
    STACK_KIND,
    STACKS,
    VERSION,
)
from convergence.operator.kube.records import split_phase, status_of

# Reasons of a Failed condition written for a spec that never started (controllers/stack.py,
# parameters_from.py): the phase then still speaks of the generation before.
NOT_STARTED_REASONS = frozenset(
    {
        "InvalidTemplate",
        "ParametersNotFound",
        "ParametersForbidden",
        "FilesNotFound",
        "FilesForbidden",
    }
)


class ChildStacks:
    """The NestedStacks of one parent stack (see the module)."""

    def __init__(self, owner: KubernetesStacks, parent: str) -> None:
        self._owner = owner
        self.parent = parent

    def _path(self, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self._owner.namespace}/{STACKS}/{name}"

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
        api = self._owner.api
        parent = if_present(request, api, "GET", self._path(self.parent))
        if parent is None:
            raise ResourceFailure(f"the parent stack {self.parent} is gone")
        if environment is None or files is None:
            inherited = self._owner.inherited(self.parent, resource)
            environment = inherited[0] if environment is None else environment
            files = inherited[1] if files is None else files
        spec: dict[str, Any] = {
            "template": dict(template),
            "parameters": dict(parameters),
            "disableRollback": True,
        }
        self._refuse_a_stranger(name, str(parent["metadata"]["uid"]))
        service_account = (parent.get("spec") or {}).get("serviceAccountName")
        if service_account:
            spec["serviceAccountName"] = service_account
        if timeout is not None:
            spec["timeoutSeconds"] = max(1, int(timeout))
        if environment:
            spec["environment"] = dict(environment)
        if files:
            spec["files"] = dict(files)
        manifest = {
            "apiVersion": API_VERSION,
            "kind": STACK_KIND,
            "metadata": {
                "name": name,
                "namespace": self._owner.namespace,
                "labels": {
                    STACK_LABEL: label_value(self.parent),
                    RESOURCE_LABEL: label_value(resource),
                    STACK_RESOURCE_LABEL: record_id,
                    MANAGED_BY_LABEL: MANAGED_BY,
                },
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": STACK_KIND,
                        "name": self.parent,
                        "uid": parent["metadata"]["uid"],
                    }
                ],
            },
            "spec": spec,
        }
        try:
            applied = request(
                api,
                "PATCH",
                self._path(name),
                query=[("fieldManager", FIELD_MANAGER), ("force", True)],
                body=manifest,
                content_type=APPLY_PATCH,
            )
        except ApiError as exc:
            raise ResourceFailure(f"cannot apply nested stack {name}: {exc.message}") from None
        return int(applied["metadata"].get("generation") or 0)

    def _refuse_a_stranger(self, name: str, parent_uid: str) -> None:
        """Fail when a Stack called `name` exists that this parent does not own.

        A child's name is derived from the parent, the resource and its record;
        a Stack of that name someone else made (by chance, or on purpose) is
        never taken over by an apply, nor deleted.
        """
        existing = if_present(request, self._owner.api, "GET", self._path(name))
        if existing is not None and not owned_by(existing, parent_uid):
            raise ResourceFailure(
                f"a Stack named {name} exists and is not a nested stack of {self.parent}"
            )

    def get(self, name: str) -> NestedStackState | None:
        body = if_present(request, self._owner.api, "GET", self._path(name))
        if body is None:
            return None
        return child_state(body)

    def retry(self, name: str) -> str | None:
        token = str(uuid.uuid4())
        body = {"metadata": {"annotations": {RETRY_ANNOTATION: token}}}
        try:
            request(
                self._owner.api,
                "PATCH",
                self._path(name),
                body=body,
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            raise ResourceFailure(f"cannot retry nested stack {name}: {exc.message}") from None
        return token

    def delete(self, name: str) -> None:
        parent = if_present(request, self._owner.api, "GET", self._path(self.parent))
        if parent is not None:
            self._refuse_a_stranger(name, str(parent["metadata"]["uid"]))
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            request(self._owner.api, "DELETE", self._path(name), body=options)
        except ApiError as exc:
            if not is_not_found(exc):
                raise ResourceFailure(f"cannot delete nested stack {name}: {exc.message}") from None


def owned_by(body: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether the object names the Stack with `owner_uid` among its owners."""
    owners = (body.get("metadata") or {}).get("ownerReferences") or ()
    return any(o.get("kind") == STACK_KIND and o.get("uid") == owner_uid for o in owners)


def child_state(body: Mapping[str, Any]) -> NestedStackState:
    """What a type sees of a child Stack's body (see the module)."""
    status = status_of(body)
    metadata = body.get("metadata") or {}
    generation = int(metadata.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    action, state = split_phase(str(status.get("phase") or "INIT_COMPLETE"))
    reason = str(status.get("statusReason") or "")
    if observed >= generation and state != "IN_PROGRESS":
        for condition in status.get("conditions") or ():
            if (
                condition.get("type") == "Failed"
                and condition.get("status") == "True"
                and condition.get("reason") in NOT_STARTED_REASONS
                and int(condition.get("observedGeneration") or 0) >= generation
            ):
                state, reason = "FAILED", str(condition.get("message") or reason)
    return NestedStackState(
        name=str(metadata.get("name")),
        generation=observed,
        action=action,
        status=state,
        reason=reason,
        outputs=dict(status.get("outputs") or {}),
        retried=str(status.get("handledRetry") or ""),
    )


class KubernetesStacks:
    """The engine's NestedStackClients in one namespace: a ChildStacks per parent.

    `store` is the namespace's engine store, where a parent's current template
    revision is read for what a child inherits (None: children inherit nothing).
    """

    def __init__(self, api: ApiClient, namespace: str, store: Store | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.store = store

    def inherited(self, parent: str, resource: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The environment and files a child of `resource` gets from its parent's current
        template revision, as Heat gives them to a nested stack."""
        record = None if self.store is None else self.store.get_stack(parent)
        if self.store is None or record is None or record.template is None:
            return {}, {}
        revision = self.store.get_template(record.template)
        return nested_environment(revision.environment, resource), dict(revision.files)

    def for_stack(self, stack: str) -> ChildStacks:
        return ChildStacks(self, stack)
