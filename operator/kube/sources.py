"""`spec.parametersFrom` and `spec.filesFrom` sources, read with the identity the stack acts with.

The operator may read every ConfigMap and Secret of the namespaces it serves;
the people who write Stacks may not. So a source is read:
- impersonating the Stack's `spec.serviceAccountName` when it names one (the
  same identity its Kubernetes::Objects are applied with), so that account's
  RBAC decides;
- in multi-tenant mode (`--require-service-account`) never otherwise: a stack
  naming no ServiceAccount reads nothing;
- else (single-tenant mode, no ServiceAccount) with the operator's identity:
  a Stack author can then read through the operator every ConfigMap and
  Secret of the Stack's namespace that the operator can (the README says so;
  multi-tenant mode is the lockdown).
Whatever the identity, an object holding the operator's own state (template
revisions, RandomString values, traversal maps: `kube/reserved.py`) is never a
source. A refusal is `ParametersForbidden` naming the object and the identity,
never a value.
"""

from __future__ import annotations

from collections.abc import Mapping

from convergence.operator.kube.api import ApiError, ApiForbidden, is_not_found, request
from convergence.operator.kube.names import is_object_name
from convergence.operator.kube.objects import KubernetesObjects
from convergence.operator.kube.reserved import operator_state
from convergence.operator.parameters_from import (
    CONFIG_MAP,
    SECRET,
    ParametersForbidden,
    secret_strings,
)

_PLURALS = {CONFIG_MAP: "configmaps", SECRET: "secrets"}


class ParameterSources:
    """Reads the parametersFrom sources of one namespace's stacks (see the module)."""

    def __init__(self, objects: KubernetesObjects) -> None:
        self.objects = objects

    def identity(self, service_account: str | None) -> str:
        """Who reads, in words."""
        if service_account is None:
            return "the operator"
        return f"ServiceAccount {self.objects.namespace}/{service_account}"

    def read(
        self, service_account: str | None, kind: str, name: str, field: str = "parametersFrom"
    ) -> Mapping[str, str] | None:
        """The string data of the ConfigMap or Secret `name` (None: it does not exist);
        `field` is the spec field that names it, for messages."""
        if service_account is None and self.objects.require_service_account:
            raise ParametersForbidden(
                f"{field}: {kind} {name}: the stack names no spec.serviceAccountName, "
                "and this operator reads sources only as the stack's ServiceAccount "
                "(--require-service-account)"
            )
        if service_account is not None and not is_object_name(service_account):
            raise ParametersForbidden(
                f"{field}: spec.serviceAccountName {service_account!r} is not the name "
                f"of a ServiceAccount of namespace {self.objects.namespace!r}"
            )
        if not is_object_name(name):
            raise ParametersForbidden(f"{field}: {name!r} is not the name of a {kind}")
        path = f"/api/v1/namespaces/{self.objects.namespace}/{_PLURALS[kind]}/{name}"
        try:
            body = request(self.objects.client_for(service_account), "GET", path)
        except ApiError as exc:
            if is_not_found(exc):
                return None
            if isinstance(exc, ApiForbidden):
                raise ParametersForbidden(
                    f"{field}: {self.identity(service_account)} may not read "
                    f"{kind} {name}: {exc.message}"
                ) from None
            raise
        state = operator_state(body)
        if state is not None:
            raise ParametersForbidden(
                f"{field}: {kind} {name} holds {state}, which is never a source"
            )
        if kind == CONFIG_MAP:
            return {str(k): str(v) for k, v in (body.get("data") or {}).items()}
        return secret_strings(body.get("data"))
