"""When a Kubernetes object is ready: kstatus conventions, as pure functions of the live object.

Kubernetes::Object polls these in check_create/update_complete, so that a
stack's dependents start only once what they depend on is in service.

- any object: not while being deleted, and a `status.observedGeneration`
  behind `metadata.generation` means not yet;
- Deployment: observed, every replica updated, no old ones left, all
  available (a ProgressDeadlineExceeded condition fails it); StatefulSet:
  ready, updated (to the partition) and on the update revision; DaemonSet:
  every scheduled pod updated and available;
- Job: Complete (Failed fails the resource); PersistentVolumeClaim: Bound (Lost
  fails); Pod: Running and Ready, or Succeeded (Failed fails); a LoadBalancer
  Service: an ingress in its status;
- anything else: a `Stalled` condition True fails it, a `Ready` or else an
  `Available` condition decides; without them it is ready at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def api_group(api_version: str) -> str:
    """The API group of an apiVersion ("" for the core group `v1`)."""
    group, _, _ = api_version.rpartition("/")
    return group


def section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`body[key]` when it is a mapping, else an empty one."""
    value = body.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Readiness:
    """Whether a live object is ready; if not, what it waits for or why it failed."""

    ready: bool
    message: str = ""
    failed: bool = False


READY = Readiness(True)


def _waiting(message: str) -> Readiness:
    return Readiness(False, message)


def _failed(message: str) -> Readiness:
    return Readiness(False, message, failed=True)


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def _is_true(status: Mapping[str, Any], kind: str) -> bool:
    condition = _condition(status, kind)
    return condition is not None and condition.get("status") == "True"


def _number(mapping: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = mapping.get(key, default)
    return value if isinstance(value, int) else default


def _explain(condition: Mapping[str, Any]) -> str:
    parts = [str(condition.get(k)) for k in ("reason", "message") if condition.get(k)]
    return ": ".join(parts) if parts else f"status {condition.get('status')}"


def _deployment(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    progressing = _condition(status, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _failed(f"rollout stalled: {_explain(progressing)}")
    replicas = _number(spec, "replicas", 1)
    updated = _number(status, "updatedReplicas")
    available = _number(status, "availableReplicas")
    total = _number(status, "replicas")
    if updated < replicas:
        return _waiting(f"{updated} of {replicas} replicas updated")
    if total > updated:
        return _waiting(f"{total - updated} old replicas to terminate")
    if available < replicas:
        return _waiting(f"{available} of {replicas} replicas available")
    return READY


def _stateful_set(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    replicas = _number(spec, "replicas", 1)
    ready = _number(status, "readyReplicas")
    if ready < replicas:
        return _waiting(f"{ready} of {replicas} replicas ready")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = _number(strategy.get("rollingUpdate") or {}, "partition")
        updated = _number(status, "updatedReplicas")
        if updated < replicas - partition:
            return _waiting(f"{updated} of {replicas - partition} replicas updated")
        if partition == 0 and status.get("currentRevision") != status.get("updateRevision"):
            return _waiting(f"the rollout to revision {status.get('updateRevision')}")
    if "availableReplicas" in status and _number(status, "availableReplicas") < replicas:
        return _waiting(f"{_number(status, 'availableReplicas')} of {replicas} replicas available")
    return READY


def _daemon_set(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    desired = _number(status, "desiredNumberScheduled")
    strategy = spec.get("updateStrategy") or {}
    updated = _number(status, "updatedNumberScheduled")
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and updated < desired:
        return _waiting(f"{updated} of {desired} scheduled pods updated")
    available = _number(status, "numberAvailable")
    if available < desired:
        return _waiting(f"{available} of {desired} scheduled pods available")
    return READY


def _job(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    failed = _condition(status, "Failed")
    if failed is not None and failed.get("status") == "True":
        return _failed(f"the Job failed: {_explain(failed)}")
    if _is_true(status, "Complete"):
        return READY
    return _waiting(f"the Job to complete ({_number(status, 'succeeded')} succeeded)")


def _claim(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    phase = status.get("phase", "Pending")
    if phase == "Bound":
        return READY
    if phase == "Lost":
        return _failed("the claim lost its volume")
    return _waiting(f"the claim to be Bound (it is {phase})")


def _pod(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    phase = status.get("phase", "Pending")
    if phase == "Succeeded" or (phase == "Running" and _is_true(status, "Ready")):
        return READY
    if phase == "Failed":
        return _failed(f"the Pod failed: {status.get('reason') or status.get('message') or ''}")
    return _waiting(f"the Pod to be Ready (it is {phase})")


def _service(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    if spec.get("type") == "LoadBalancer" and not (status.get("loadBalancer") or {}).get("ingress"):
        return _waiting("the load balancer's ingress")
    return READY


def _by_conditions(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Readiness:
    stalled = _condition(status, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return _failed(f"stalled: {_explain(stalled)}")
    for kind in ("Ready", "Available"):
        condition = _condition(status, kind)
        if condition is not None:
            if condition.get("status") == "True":
                return READY
            return _waiting(f"condition {kind} (now {_explain(condition)})")
    return READY


# (API group, kind) -> rule; every other kind is judged by its conditions.
_RULES = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _claim,
    ("", "Pod"): _pod,
    ("", "Service"): _service,
}
# Kinds whose controller always reports status.observedGeneration.
_OBSERVED = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet")})


def readiness(live: Mapping[str, Any]) -> Readiness:
    """Whether a live object is ready, by kstatus conventions (see the module)."""
    metadata = section(live, "metadata")
    spec = section(live, "spec")
    status = section(live, "status")
    if metadata.get("deletionTimestamp"):
        return _waiting("the object is being deleted")
    key = (api_group(str(live.get("apiVersion", ""))), str(live.get("kind", "")))
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if key in _OBSERVED and not isinstance(observed, int):
        return _waiting("its controller to observe it")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return _waiting(f"its controller to observe generation {generation} (at {observed})")
    return _RULES.get(key, _by_conditions)(spec, status)
