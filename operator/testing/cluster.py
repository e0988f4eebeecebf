"""A handle on a running cluster for tests and the demo: its kubeconfig and kubectl."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
