"""A handle on a running cluster for tests and the demo: its kubeconfig and kubectl, and
waiting there for a Stack to settle."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# The phases an operation on a Stack ends in (INIT_COMPLETE, before any, is none of them).
SETTLED = ("_COMPLETE", "_FAILED")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its kubeconfig and a kubectl bound to it."""

    kubeconfig: Path
    kubectl_binary: str

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; with check, a failure shows its stderr."""
        result = subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def get_json(self, namespace: str, *what: str) -> Any:
        """`kubectl get` in `namespace` as JSON; None when it fails (e.g. not found)."""
        result = self.kubectl("get", f"--namespace={namespace}", *what, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None


class OperatorLog(Protocol):
    """An operator whose last log lines can be shown (a local process, a Deployment's pod)."""

    def tail(self, lines: int = 40) -> str: ...


def settled_status(
    cluster: Cluster, namespace: str, name: str, phase: str | None = None
) -> dict[str, Any] | None:
    """The Stack's status when it has taken up its latest generation and is in `phase`
    (without one: in the *_COMPLETE or *_FAILED phase an operation ended in); else None.

    The generation check keeps the phase of the operation before an apply from counting. An
    operation started by an annotation changes no generation: ask for its own `phase` then.
    """
    body = cluster.get_json(namespace, "stack", name) or {}
    status = dict(body.get("status") or {})
    found = str(status.get("phase") or "")
    taken_up = status.get("observedGeneration") == body.get("metadata", {}).get("generation")
    ended = found.endswith(SETTLED) and not found.startswith("INIT_")
    return status if taken_up and (found == phase if phase else ended) else None


def wait_for_stack(
    cluster: Cluster,
    namespace: str,
    name: str,
    phase: str | None = None,
    *,
    operator: OperatorLog | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Wait until the Stack is settled (see `settled_status`) and return its status.

    On timeout, fail with the status last seen and, given `operator`, its log tail.
    """
    deadline = time.monotonic() + timeout
    while (status := settled_status(cluster, namespace, name, phase)) is None:
        if time.monotonic() > deadline:
            body = cluster.get_json(namespace, "stack", name) or {}
            seen = body.get("status") or {}
            log = f"; operator log:\n{operator.tail()}" if operator is not None else ""
            raise AssertionError(
                f"stack {namespace}/{name} not {phase or 'settled'} in {timeout:.0f}s: "
                f"{seen.get('phase') or 'no phase'} ({seen.get('statusReason', '')}), "
                f"generation {body.get('metadata', {}).get('generation')} "
                f"observed {seen.get('observedGeneration')}{log}"
            )
        time.sleep(0.3)
    return status
