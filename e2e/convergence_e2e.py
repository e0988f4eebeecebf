"""The end-to-end harness: the chart installed by Helm, and the operator under its identity.

Everything here is driven by KUBECONFIG (an admin identity, used to install
the chart and to check reality) and two ways of running the operator:

- `E2E_OPERATOR=local` (`make e2e`): the chart is installed with
  `replicaCount=0` (no kubelet runs pods on the local control plane) and the
  operator runs here as `convergence run`, with a kubeconfig holding a
  TokenRequest token of the chart's ServiceAccount, so that the chart's RBAC
  — not an admin certificate, which bypasses RBAC — is what is exercised.
- `E2E_OPERATOR=deployment` (`make e2e-kind`): the chart's Deployment runs the
  image `E2E_IMAGE` (loaded into the cluster beforehand).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT
from convergence.operator.testing.operator_process import OperatorProcess
from convergence.operator.testing.webhook import operator_args, wait_until_refusing

CHART = REPO_ROOT / "charts" / "convergence"
EXAMPLES = REPO_ROOT / "examples"
RELEASE = "convergence"
RELEASE_NAMESPACE = "convergence-system"
SERVICE_ACCOUNT = "convergence"  # the chart's default: the release's full name
STACK_LABEL = "convergence.dev/stack"
MANAGED_BY = "app.kubernetes.io/managed-by=convergence"
LOCAL, DEPLOYMENT = "local", "deployment"
NO_NODE = "convergence\\.dev/e2e-no-node"  # (a --set key: its dot escaped)
GUARD_LABEL = "app.kubernetes.io/component=uninstall-guard"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
# The chart's Stack webhook: its configuration and the Secret of its certificate.
WEBHOOK_CONFIGURATION = "convergence-stacks"
WEBHOOK_SECRET = "convergence-webhook-tls"


def operator_mode() -> str:
    mode = os.environ.get("E2E_OPERATOR", LOCAL)
    if mode not in (LOCAL, DEPLOYMENT):
        raise ValueError(f"E2E_OPERATOR must be {LOCAL} or {DEPLOYMENT}, not {mode!r}")
    return mode


def tool(name: str) -> str:
    """A binary from PATH (make e2e puts the control plane's kubectl and helm first)."""
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not on PATH")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, input: str | None = None, timeout: float = 300) -> str:
    """Run a command; on failure, fail with its output."""
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


@dataclass
class Kube:
    """kubectl as the admin of KUBECONFIG, with JSON helpers."""

    cluster: Cluster

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input).stdout

    def get(self, *what: str, namespace: str | None = None) -> Any:
        scope = [f"--namespace={namespace}"] if namespace else []
        return json.loads(self.kubectl("get", *scope, *what, "-o", "json"))

    def items(self, *what: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return list(self.get(*what, namespace=namespace)["items"])

    def exists(self, *what: str, namespace: str | None = None) -> bool:
        scope = [f"--namespace={namespace}"] if namespace else []
        result = self.cluster.kubectl("get", *scope, *what, "--ignore-not-found", check=False)
        return result.returncode == 0 and bool(result.stdout.strip())

    def apply(self, documents: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        scope = [f"--namespace={namespace}"] if namespace else []
        text = yaml.safe_dump_all(list(documents))
        self.kubectl("apply", "--server-side", "--force-conflicts", *scope, "-f", "-", input=text)

    def wait(self, what: str, condition: str, namespace: str, timeout: int = 120) -> None:
        self.kubectl(
            "wait", f"--namespace={namespace}", f"--for={condition}", what, f"--timeout={timeout}s"
        )

    def can_i(self, verb: str, resource: str, namespace: str, user: str) -> bool:
        """`kubectl auth can-i` as `user`; `resource` may name a subresource (stacks/status)."""
        resource, _, subresource = resource.partition("/")
        extra = [f"--subresource={subresource}"] if subresource else []
        result = self.cluster.kubectl(
            "auth",
            "can-i",
            verb,
            resource,
            *extra,
            f"--namespace={namespace}",
            f"--as={user}",
            check=False,
        )
        return result.stdout.strip() == "yes"

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig for the ServiceAccount, with a token from the TokenRequest API."""
        token = self.kubectl(
            "create", "token", service_account, f"--namespace={namespace}", "--duration=2h"
        ).strip()
        admin = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": cluster}],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": service_account}}],
            "current-context": "e2e",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


@dataclass
class Helm:
    """helm against KUBECONFIG."""

    kubeconfig: Path
    binary: str = field(default_factory=lambda: tool("helm"))

    def __call__(self, *args: str, timeout: float = 300) -> str:
        return run(self.binary, f"--kubeconfig={self.kubeconfig}", *args, timeout=timeout)

    def template(self, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
        """The chart rendered for the cluster's Kubernetes version, as `helm install` would."""
        version = json.loads(
            run(tool("kubectl"), f"--kubeconfig={self.kubeconfig}", "version", "-o", "json")
        )["serverVersion"]["gitVersion"]
        rendered = self(
            "template",
            release,
            str(CHART),
            f"--namespace={namespace}",
            f"--kube-version={version}",
            *values,
        )
        return [doc for doc in yaml.safe_load_all(rendered) if doc]


@functools.cache
def webhook_port() -> int:
    """The local operator's webhook port, one for the session (the chart's url names it)."""
    return free_port()


def chart_values() -> list[str]:
    """`--set` flags of the chart for this mode."""
    if operator_mode() == LOCAL:
        # No kubelet: kwok would play any scheduled pod to success at once, the
        # uninstall guard's too. Pinned to no node, that pod stays Pending and
        # play_uninstall_guard runs it here instead. The API server calls the
        # local operator's webhook, with the certificate the chart made.
        url = f"https://127.0.0.1:{webhook_port()}/validate-stack"
        return [
            "--set",
            "replicaCount=0",
            "--set",
            f"nodeSelector.{NO_NODE}=none",
            "--set",
            f"webhook.url={url}",
            "--set",
            "webhook.certificate.ipAddresses={127.0.0.1}",
        ]
    image = os.environ.get("E2E_IMAGE", "convergence:e2e")
    repository, _, tag = image.rpartition(":")
    return [
        "--set",
        f"image.repository={repository},image.tag={tag},image.pullPolicy=Never",
    ]


class Operator:
    """The operator under the chart's ServiceAccount; it can be paused for RBAC probes."""

    def __init__(self, kube: Kube, helm: Helm, workdir: Path) -> None:
        self.kube = kube
        self.helm = helm
        self.workdir = workdir
        self.mode = operator_mode()
        self.process: OperatorProcess | None = None
        self.metrics_port = free_port()

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def start(self, *extra: str) -> None:
        """Start it; `extra` are `convergence run` flags for the local operator (the
        Deployment's come from the chart's values)."""
        if self.mode == LOCAL:
            # Chosen anew at each start: a port free a minute ago may not be now.
            self.metrics_port = free_port()
            kubeconfig = self.kube.token_kubeconfig(
                RELEASE_NAMESPACE, SERVICE_ACCOUNT, self.workdir / "operator.kubeconfig"
            )
            self.process = OperatorProcess(
                kubeconfig,
                self.log,
                "--all-namespaces",
                f"--metrics-port={self.metrics_port}",
                # As in the chart's pods: its Lease where the chart lets it keep one.
                f"--lease-namespace={RELEASE_NAMESPACE}",
                *self.webhook_args(),
                *extra,
            ).start()
        else:
            self._scale(1)
            self.kube.kubectl(
                "rollout",
                "status",
                f"--namespace={RELEASE_NAMESPACE}",
                "deployment/convergence",
                "--timeout=180s",
            )
        # With the chart's failurePolicy Fail, no Stack is accepted until the webhook serves.
        wait_until_refusing(self.kube.cluster, "default", timeout=120)

    def webhook_args(self) -> tuple[str, ...]:
        """`convergence run` flags serving the chart's webhook here, with its certificate."""
        secret = self.kube.get("secret", WEBHOOK_SECRET, namespace=RELEASE_NAMESPACE)["data"]
        files = {}
        for key in ("tls.crt", "tls.key"):
            files[key] = self.workdir / f"webhook-{key}"
            files[key].write_bytes(base64.b64decode(secret[key]))
            files[key].chmod(0o600)
        return operator_args(webhook_port(), str(files["tls.crt"]), str(files["tls.key"]))

    def webhook_failure_policy(self, policy: str) -> None:
        """Set the chart's webhook failurePolicy (Ignore while no operator serves it)."""
        patch = [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": policy}]
        self.kube.kubectl(
            "patch",
            "validatingwebhookconfiguration",
            WEBHOOK_CONFIGURATION,
            "--type=json",
            "-p",
            json.dumps(patch),
        )

    def stop(self) -> None:
        if self.mode == LOCAL:
            if self.process is not None:
                self.process.stop()
                self.process = None
            return
        if not self.kube.exists("deployment", "convergence", namespace=RELEASE_NAMESPACE):
            return  # uninstalled
        self._scale(0)
        self.kube.kubectl(
            "wait",
            f"--namespace={RELEASE_NAMESPACE}",
            "--for=delete",
            "pod",
            "-l",
            "app.kubernetes.io/component=operator",
            "--timeout=120s",
        )

    def _scale(self, replicas: int) -> None:
        self.kube.kubectl(
            "scale",
            f"--namespace={RELEASE_NAMESPACE}",
            "deployment/convergence",
            f"--replicas={replicas}",
        )

    def tail(self, lines: int = 60) -> str:
        if self.mode == LOCAL:
            return self.process.tail(lines) if self.process else "(operator not running)"
        result = self.kube.cluster.kubectl(
            "logs",
            f"--namespace={RELEASE_NAMESPACE}",
            "deployment/convergence",
            f"--tail={lines}",
            check=False,
        )
        return result.stdout + result.stderr


def multi_tenant(kube: Kube, helm: Helm, operator: Operator, enabled: bool) -> None:
    """Upgrade the release to (or back from) multi-tenant mode and restart the operator."""
    operator.stop()
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        f"--namespace={RELEASE_NAMESPACE}",
        "--reuse-values",
        "--set",
        f"multiTenant.enabled={str(enabled).lower()}",
    )
    assert kube.can_i("impersonate", "serviceaccounts", "default", OPERATOR_USER) is enabled
    operator.start(*(["--require-service-account"] if enabled else []))


def role(namespace: str, name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceAccount `name` with a Role of `rules` in `namespace`."""
    meta = {"name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    """One RBAC rule over one API group."""
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds passed; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def physical(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Reality: the ConfigMaps standing for TestResources, by logical name."""
    found: dict[str, dict[str, Any]] = {}
    for item in kube.items("configmaps", "-l", MANAGED_BY, namespace=namespace):
        name = item["metadata"]["labels"]["convergence.dev/resource"]
        assert name not in found, f"two physical copies of {name}"
        found[name] = {"id": item["metadata"]["name"], **json.loads(item["data"]["properties"])}
    return found


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type `kind` ({} when there is none)."""
    conditions = body.get("status", {}).get("conditions", [])
    return next((dict(c) for c in conditions if c["type"] == kind), {})


def uninstall(kube: Kube, helm: Helm, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`helm uninstall` of the release, with its pre-delete hook; the result is not checked.

    On the local control plane the hook's pod is run here (play_uninstall_guard)
    while Helm waits for its Job, so Helm, the hook's Job and ConfigMap, and the
    guard's RBAC are all the real ones; only the kubelet is played.
    """
    command = [
        helm.binary,
        f"--kubeconfig={helm.kubeconfig}",
        "uninstall",
        RELEASE,
        f"--namespace={RELEASE_NAMESPACE}",
        "--wait",
        "--timeout=3m",
    ]
    if operator_mode() != LOCAL:
        return subprocess.run(command, capture_output=True, text=True, timeout=300)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as uninstalling:
        try:
            play_uninstall_guard(kube, workdir, uninstalling)
            stdout, stderr = uninstalling.communicate(timeout=180)
        finally:
            if uninstalling.poll() is None:
                uninstalling.kill()
    return subprocess.CompletedProcess(command, uninstalling.returncode, stdout, stderr)


def uninstall_guard_log(kube: Kube, workdir: Path) -> str:
    """What the last uninstall guard said (its pod's log; here, where it ran)."""
    if operator_mode() == LOCAL:
        return (workdir / "guard.log").read_text()
    result = kube.cluster.kubectl(
        "logs", f"--namespace={RELEASE_NAMESPACE}", "job/convergence-uninstall-guard", check=False
    )
    return result.stdout + result.stderr


def play_uninstall_guard(kube: Kube, workdir: Path, uninstalling: subprocess.Popen[str]) -> None:
    """Play the kubelet for the uninstall guard's pod: run its command here, report its exit.

    The script comes from the hook's ConfigMap (as the pod would mount it), the
    identity is a token of the pod's ServiceAccount, the environment is the
    container's; the exit code becomes the pod's phase, from which the Job
    controller completes or fails the Job that Helm waits for.
    """
    pods: list[dict[str, Any]] = []

    def pending() -> bool:
        nonlocal pods
        pods = kube.items("pods", "-l", GUARD_LABEL, namespace=RELEASE_NAMESPACE)
        pods = [p for p in pods if p.get("status", {}).get("phase", "Pending") == "Pending"]
        return bool(pods) or uninstalling.poll() is not None

    assert wait_until(pending, timeout=60), "helm uninstall started no uninstall-guard pod"
    if not pods:
        return  # helm ended before any hook ran (e.g. no release)
    pod = pods[0]
    spec = pod["spec"]
    (container,) = spec["containers"]
    # The script's ConfigMap (the API server adds a projected token volume too).
    volumes = {v["name"]: v for v in spec["volumes"] if "configMap" in v}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] in volumes]
    volume = volumes[mount["name"]]
    files = kube.get("configmap", volume["configMap"]["name"], namespace=RELEASE_NAMESPACE)
    mounted = workdir / "guard"
    mounted.mkdir(exist_ok=True)
    for name, text in files["data"].items():
        (mounted / name).write_text(text)
    kubeconfig = kube.token_kubeconfig(
        RELEASE_NAMESPACE, spec["serviceAccountName"], workdir / "guard.kubeconfig"
    )
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    command = local_command(container["command"], mount["mountPath"], mounted)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = subprocess.run(
        command,
        env={**os.environ, **env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    (workdir / "guard.log").write_text(result.stdout + result.stderr)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    terminated = {
        "exitCode": result.returncode,
        "reason": "Completed" if result.returncode == 0 else "Error",
        "message": (result.stdout + result.stderr)[-1000:],
        "startedAt": started,
        "finishedAt": finished,
    }
    status = {
        "phase": "Succeeded" if result.returncode == 0 else "Failed",
        "startTime": started,
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    kube.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        f"--namespace={RELEASE_NAMESPACE}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def local_command(command: Sequence[str], mount_path: str, mounted: Path) -> list[str]:
    """The container's command for this machine: its python, the mounted files here."""
    local = [sys.executable if part == "python" else part for part in command]
    return [part.replace(mount_path.rstrip("/"), str(mounted), 1) for part in local]
