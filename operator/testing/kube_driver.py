"""The scenario `Driver` on the real operator: scenario files run unchanged on Kubernetes.

Operations write the `Stack` object, as a user with kubectl would; observations
read what a user can see: the Stack's status (phase, the `Ready` condition,
reason, outputs), the StackResource objects and reality, i.e. the ConfigMaps
that stand for TestResources (`ConfigMapReality`).

How the simulator's notions map here:

- An operation returns once the operator has taken it up (the Stack's
  `status.observedGeneration` reached the new generation, or the stack's phase
  is DELETE_* / the Stack is gone after a delete), as the simulator's
  operations start their traversal before returning. Without this, a
  `run_until` right after an update could be satisfied by the state before it.
- `run: quiet`: the stack has taken up its spec, neither the stack nor any
  StackResource is IN_PROGRESS, and nothing the driver observes (the Stack,
  its StackResources, its ConfigMaps) changes for a settle period longer than
  the engine's poll interval.
- `run: N`: worker steps have no meaning on the operator; it is a short pause
  (N x `step_seconds`, at most one second) and promises nothing. The engine
  polls a started action after a second at the earliest, so a state a
  scenario checks after `run: 1`/`run: 2` (an action still in progress) is
  still there.
- `run_until`: observe every `poll_seconds` until the condition holds or
  `timeout` passes.
- A Stack that was deleted and is gone reads as DELETE_COMPLETE: its
  finalizer is released only when the delete traversal completed.
- rollback and cancel are what a user does with kubectl: a new value of the
  `convergence.dev/rollback` annotation, or `convergence.dev/cancel` set to
  `rollback` / `no-rollback`; they are taken up when the operator has
  recorded the value in `status.handledRollback` / `handledCancel` and taken
  the annotation off (`controllers.requests.handled`). An update to
  the spec the stack has already (Heat's "update again with the same
  template") changes no generation; it is a new `convergence.dev/retry`.
- A stack timeout in seconds is `spec.timeoutSeconds`.
- pause, resume and crash raise `NotSupportedOnKubernetes`: one worker cannot
  be held or crashed from outside (crashing the whole operator is what the
  kill tests do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import kubernetes
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from convergence.operator.controllers.requests import CANCEL, RETRY, ROLLBACK, RequestKind, handled
from convergence.operator.engine.plugin import STACK_LABEL, label_value
from convergence.operator.engine.sim.scenario import (
    Observation,
    Operation,
    ResourceView,
    Scenario,
    ScenarioError,
)
from convergence.operator.kube.api import is_not_found
from convergence.operator.kube.names import (
    API_VERSION,
    GROUP,
    STACK_KIND,
    STACK_RESOURCES,
    STACKS,
    VERSION,
)
from convergence.operator.kube.reality import ConfigMapReality
from convergence.operator.testing.cluster import Cluster

JSON_PATCH = "application/json-patch+json"

UNSUPPORTED_STEPS: Mapping[str, str] = {
    "pause": "holding one resource's worker has no meaning on Kubernetes (simulator only)",
    "resume": "releasing a held resource worker has no meaning on Kubernetes (simulator only)",
    "crash": (
        "crashing one resource's worker is simulator only "
        "(on Kubernetes the kill tests kill the whole operator)"
    ),
}


class NotSupportedOnKubernetes(Exception):
    """A scenario step the operator cannot carry out; the scenario is skipped, not failed.

    Deliberately not a ScenarioError, so the runner lets it through unchanged.
    """


def unsupported_reason(scenario: Scenario) -> str | None:
    """Why `scenario` cannot run on the operator (None: it can), found before running it."""
    for number, step in enumerate(scenario.steps, 1):
        if not isinstance(step, dict):
            continue
        for kind, argument in step.items():
            if kind in UNSUPPORTED_STEPS:
                return f"step {number} ({kind}): {UNSUPPORTED_STEPS[kind]}"
            if kind in ("create", "update") and isinstance(argument, dict):
                timeout = argument.get("timeout")
                if timeout is not None and _timeout_seconds(timeout) is None:
                    return f"step {number} ({kind}): {_timeout_reason(timeout)}"
    return None


def _timeout_seconds(seconds: Any) -> int | None:
    value = float(seconds)
    return int(value) if value.is_integer() and value >= 1 else None


def _timeout_reason(seconds: Any) -> str:
    return (
        f"a stack timeout of {seconds}s cannot be expressed: "
        "spec.timeoutSeconds takes whole seconds (at least 1)"
    )


class KubernetesDriver:
    """Runs scenario operations on the real operator in one namespace."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        *,
        timeout: float = 60.0,
        poll_seconds: float = 0.1,
        settle_seconds: float = 1.5,
        step_seconds: float = 0.2,
    ) -> None:
        self.namespace = namespace
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.step_seconds = step_seconds
        self.api: ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig)
        )
        self._objects = CustomObjectsApi(self.api)
        self._core = CoreV1Api(self.api)
        self.reality = ConfigMapReality(self.api, namespace)
        self._stacks: set[str] = set()
        self._deleted: set[str] = set()
        self._rollbacks = 0

    def close(self) -> None:
        """Release the API client's connections."""
        self.api.close()  # type: ignore[no-untyped-call]

    # -- operations ------------------------------------------------------------------------------

    def apply(self, stack: str, operation: Operation) -> None:
        if operation.kind in UNSUPPORTED_STEPS:
            raise NotSupportedOnKubernetes(UNSUPPORTED_STEPS[operation.kind])
        expected: tuple[RequestKind, str] | None = None
        if operation.kind == "create":
            self._create(stack, operation)
        elif operation.kind == "update":
            if not self._update(stack, operation):
                self._rollbacks += 1
                expected = (RETRY, f"scenario-{self._rollbacks}")
        elif operation.kind == "delete":
            self._delete(stack)
        elif operation.kind == "rollback":
            self._rollbacks += 1
            expected = (ROLLBACK, f"scenario-{self._rollbacks}")
        elif operation.kind == "cancel":
            expected = (CANCEL, "rollback" if operation.options.get("rollback") else "no-rollback")
        else:
            raise ScenarioError(f"unknown operation {operation.kind!r}")
        if expected is None:
            self._await_taken_up(stack, operation.kind)
        else:
            self._annotate(stack, expected[0].annotation, expected[1])
            self._await_handled(stack, operation.kind, *expected)

    def _annotate(self, stack: str, key: str, value: str) -> None:
        """What `kubectl annotate --overwrite stack STACK KEY=VALUE` does."""
        patch = {"metadata": {"annotations": {key: value}}}
        self._objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, STACKS, stack, patch
        )

    def _await_handled(self, stack: str, kind: str, request: RequestKind, value: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not handled(request, self._stack_body(stack) or {}, value):
            if time.monotonic() > deadline:
                raise ScenarioError(
                    f"the operator did not take up the {kind} of stack {stack} "
                    f"within {self.timeout:g}s (status: {self._stack_status(stack)})"
                )
            time.sleep(self.poll_seconds)

    def _spec_settings(self, operation: Operation) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if "disable_rollback" in operation.options:
            settings["disableRollback"] = bool(operation.options["disable_rollback"])
        if "timeout" in operation.options:
            seconds = _timeout_seconds(operation.options["timeout"])
            if seconds is None:
                raise NotSupportedOnKubernetes(_timeout_reason(operation.options["timeout"]))
            settings["timeoutSeconds"] = seconds
        for key in ("files", "environment"):
            if key in operation.options:
                settings[key] = dict(operation.options[key])
        return settings

    def _create(self, stack: str, operation: Operation) -> None:
        if operation.template is None:
            raise ScenarioError("create needs a template")
        body = {
            "apiVersion": API_VERSION,
            "kind": STACK_KIND,
            "metadata": {"name": stack},
            "spec": {
                "template": dict(operation.template),
                "parameters": dict(operation.parameters),
                **self._spec_settings(operation),
            },
        }
        self._objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, STACKS, body)
        self._stacks.add(stack)
        self._deleted.discard(stack)

    def _update(self, stack: str, operation: Operation) -> bool:
        """Replace the template and parameters; other settings stay unless the step sets them.

        Returns whether the spec changed (the generation moved).
        """
        if operation.template is None:
            raise ScenarioError("update needs a template")
        patch = [
            {"op": "add", "path": "/spec/template", "value": dict(operation.template)},
            {"op": "add", "path": "/spec/parameters", "value": dict(operation.parameters)},
        ]
        patch += [
            {"op": "add", "path": f"/spec/{key}", "value": value}
            for key, value in self._spec_settings(operation).items()
        ]
        before = (self._stack_body(stack) or {}).get("metadata", {}).get("generation")
        after = cast(
            Mapping[str, Any],
            self._objects.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACKS, stack, patch, _content_type=JSON_PATCH
            ),
        )
        return bool(after["metadata"].get("generation") != before)

    def _delete(self, stack: str) -> None:
        try:
            self._objects.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACKS, stack
            )
        except ApiException as exc:
            if not is_not_found(exc):
                raise
        self._deleted.add(stack)

    def _taken_up(self, body: Mapping[str, Any] | None, kind: str) -> bool:
        if kind == "delete":
            phase = str(((body or {}).get("status") or {}).get("phase") or "")
            return body is None or phase.startswith("DELETE_")
        if body is None:
            return False
        status = body.get("status") or {}
        return bool(status.get("observedGeneration") == body["metadata"].get("generation"))

    def _await_taken_up(self, stack: str, kind: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._taken_up(self._stack_body(stack), kind):
            if time.monotonic() > deadline:
                raise ScenarioError(
                    f"the operator did not take up the {kind} of stack {stack} "
                    f"within {self.timeout:g}s (status: {self._stack_status(stack)})"
                )
            time.sleep(self.poll_seconds)

    # -- progress --------------------------------------------------------------------------------

    def step(self, count: int) -> None:
        time.sleep(min(1.0, count * self.step_seconds))

    def run_until(self, condition: Callable[[Observation], bool], stack: str) -> bool:
        deadline = time.monotonic() + self.timeout
        while not condition(self.observe(stack)):
            if time.monotonic() > deadline:
                return False
            time.sleep(self.poll_seconds)
        return True

    def run_until_quiet(self) -> None:
        deadline = time.monotonic() + self.timeout
        quiet_since: float | None = None
        last: object = None
        while True:
            now = time.monotonic()
            busy = [self._busy(stack) for stack in sorted(self._stacks)]
            snapshot = [self._versions(stack) for stack in sorted(self._stacks)]
            if any(busy) or snapshot != last:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= self.settle_seconds:
                return
            last = snapshot
            if now > deadline:
                found = "; ".join(b for b in busy if b) or "objects still changing"
                raise ScenarioError(f"the operator was not quiet after {self.timeout:g}s: {found}")
            time.sleep(self.poll_seconds)

    def _busy(self, stack: str) -> str:
        """What of `stack` is still in progress ('' when nothing is)."""
        reasons = []
        body = self._stack_body(stack)
        if body is not None:
            status = body.get("status") or {}
            phase = str(status.get("phase") or "")
            if body["metadata"].get("deletionTimestamp"):
                # Marking an object deleted bumps its generation; the phase tells progress.
                reasons.append(f"stack {stack} is being deleted ({phase or 'no phase'})")
            elif status.get("observedGeneration") != body["metadata"].get("generation"):
                generation = body["metadata"].get("generation")
                reasons.append(f"stack {stack} has not taken up generation {generation}")
            elif phase.endswith("_IN_PROGRESS"):
                reasons.append(f"stack {stack} is {phase}")
        running = [
            f"{item['spec']['resource']}={item['status']['phase']}"
            for item in self._stack_resources(stack)
            if str((item.get("status") or {}).get("phase") or "").endswith("_IN_PROGRESS")
        ]
        if running:
            reasons.append(f"resources in progress: {', '.join(sorted(running))}")
        return "; ".join(reasons)

    def _versions(self, stack: str) -> list[str]:
        """resourceVersions of everything observed of `stack`: equal lists, nothing changed."""
        body = self._stack_body(stack)
        versions = ["" if body is None else str(body["metadata"]["resourceVersion"])]
        versions += sorted(
            f"{item['metadata']['name']}@{item['metadata']['resourceVersion']}"
            for item in self._stack_resources(stack)
        )
        configmaps = self._core.list_namespaced_config_map(
            self.namespace, label_selector=f"{STACK_LABEL}={label_value(stack)}"
        )
        versions += sorted(
            f"{c.metadata.name}@{c.metadata.resource_version}"
            for c in configmaps.items
            if c.metadata is not None
        )
        return versions

    # -- observation -----------------------------------------------------------------------------

    def _stack_body(self, stack: str) -> Mapping[str, Any] | None:
        try:
            body = self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, STACKS, stack
            )
        except ApiException as exc:
            if is_not_found(exc):
                return None
            raise
        return cast(Mapping[str, Any], body)

    def _stack_status(self, stack: str) -> Mapping[str, Any] | None:
        body = self._stack_body(stack)
        return None if body is None else body.get("status") or {}

    def _stack_resources(self, stack: str) -> list[Mapping[str, Any]]:
        listed = self._objects.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            STACK_RESOURCES,
            label_selector=f"{STACK_LABEL}={label_value(stack)}",
        )
        items = cast(Sequence[Mapping[str, Any]], cast(Mapping[str, Any], listed).get("items", []))
        return [item for item in items if item.get("spec", {}).get("stack") == stack]

    def observe(self, stack: str) -> Observation:
        body = self._stack_body(stack)
        status: Mapping[str, Any] = {} if body is None else body.get("status") or {}
        phase: str | None = status.get("phase")
        if body is None and stack in self._deleted:
            phase = "DELETE_COMPLETE"
        views = []
        for item in self._stack_resources(stack):
            item_status = item.get("status") or {}
            item_phase = str(item_status.get("phase") or "INIT_COMPLETE")
            action, _, state = item_phase.partition("_")
            views.append(
                (
                    float(item_status.get("createdAt") or 0.0),
                    str(item["metadata"]["name"]),
                    ResourceView(
                        name=str(item["spec"]["resource"]),
                        phase=item_phase,
                        reference_id=item_status.get("referenceId"),
                        replaced=item_status.get("replacedBy") is not None,
                        converged=state == "COMPLETE" and action != "INIT",
                        resource_id=item_status.get("resourceId"),
                    ),
                )
            )
        return Observation(
            phase=phase,
            # The engine's own field, written with the traversal it belongs to; the
            # Ready condition follows it in the next report, up to a second later,
            # so right after an update it may still speak of the traversal before.
            ready=status.get("ready") is True,
            reason=str(status.get("statusReason") or ""),
            outputs=dict(status.get("outputs") or {}),
            resources=[view for _, _, view in sorted(views, key=lambda v: (v[0], v[1]))],
            reality=self.reality.of_stack(stack),
        )

    # -- interference (simulator only) -----------------------------------------------------------

    def pause(self, stack: str, resource: str) -> None:
        raise NotSupportedOnKubernetes(UNSUPPORTED_STEPS["pause"])

    def resume(self, stack: str, resource: str) -> None:
        raise NotSupportedOnKubernetes(UNSUPPORTED_STEPS["resume"])

    def crash(self, stack: str, resource: str) -> None:
        raise NotSupportedOnKubernetes(UNSUPPORTED_STEPS["crash"])
