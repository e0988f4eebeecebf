"""A real local Kubernetes control plane, with fake nodes (kwok) in place of kubelets.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

Tests and the demo run against the real API server, never a mock. The binaries
are built from the Go module proxy by e2e/controlplane/build.sh (cached outside
the clone); this module makes certificates (pki.py), starts the processes on free
127.0.0.1 ports, waits until they are ready, writes a kubeconfig, and stops
exactly the processes it started, each by its recorded pid.

There is no kubelet: kwok (sigs.k8s.io/kwok) keeps one fake Node Ready and
plays the lifecycle of the Pods scheduled on it with the stages of
e2e/controlplane/kwok.yaml, so Deployments become Available, Jobs Complete
and Services get endpoints.

    python -m convergence.operator.testing.controlplane up     # prints the kubeconfig path
    python -m convergence.operator.testing.controlplane env    # prints shell exports
    python -m convergence.operator.testing.controlplane down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from convergence.operator.testing.fake_node import (
    FAKE_NODE,
    FAKE_NODE_POD_CIDR,
    KWOK_NODE_ANNOTATION,
    POD_CIDR,
    fake_node,
)
from convergence.operator.testing.pki import kubeconfig_text, write_certificates

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "e2e" / "controlplane" / "build.sh"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "controlplane"

# kube-controller-manager controllers: ownerReference cascades, namespace
# deletion, default ServiceAccounts and their tokens, the root CA ConfigMap and
# aggregated ClusterRoles (the Helm chart may use them); the workload
# controllers (with kube-scheduler and kwok, workloads become ready); Service
# endpoints; PersistentVolume binding and the protection finalizers' removal
# (the API server adds them, so without these a PVC deletion never ends).
# Left out: node lifecycle (kwok's nodes send no heartbeats), node IPAM (the
# fake node has its podCIDR), autoscaling, quotas, certificates, cloud.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "service-cidr-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_STAGES = REPO_ROOT / "e2e" / "controlplane" / "kwok.yaml"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a component's log, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def build_binaries() -> Path:
    """Build (or find cached) binaries; return the bin directory."""
    if shutil.which("bash") is None:
        raise ControlPlaneError("bash is required to run e2e/controlplane/build.sh")
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(result.stderr.strip() or "e2e/controlplane/build.sh failed")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Component:
    """One started process: its name, pid, binary and log, and how it was started."""

    name: str
    pid: int
    binary: str
    log: str
    # Its arguments and extra environment, to start it again the same way (`ControlPlane.start`).
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        """True while the recorded pid still runs the recorded binary (pids are reused)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        return cmdline == self.binary


class ControlPlane:
    """The control plane whose state (certificates, data, pids, logs) lives in `state_dir`."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        bin_dir: Path | None = None,
        profiling: bool = False,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self._bin_dir = bin_dir
        # The API server's /debug/pprof (for the benchmark's profile of the server).
        self.profiling = profiling
        # Children started by this process: their exit is seen by poll(), even
        # in the instant between fork and exec when /proc shows our cmdline.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = build_binaries()
        return self._bin_dir

    @property
    def _pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    def _components(self) -> list[Component]:
        try:
            entries = json.loads(self._pids_file.read_text())
        except FileNotFoundError:
            return []
        return [Component(**entry) for entry in entries]

    def components(self) -> list[Component]:
        """The processes it started, as recorded (e.g. to read their CPU time)."""
        return self._components()

    def _record(self, components: list[Component]) -> None:
        self._pids_file.write_text(json.dumps([c.__dict__ for c in components], indent=2))

    def _server(self) -> str | None:
        try:
            return str(json.loads((self.state_dir / "endpoints.json").read_text())["apiserver"])
        except FileNotFoundError:
            return None

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.state_dir / "pki" / "ca.crt"))

    def _get(self, url: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self._ssl_context()) as rsp:
                return int(rsp.status), rsp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")

    def is_running(self) -> bool:
        """All components alive and the API server answers /readyz."""
        components = self._components()
        server = self._server()
        if not components or server is None or not all(c.alive() for c in components):
            return False
        try:
            status, _ = self._get(f"{server}/readyz")
        except (OSError, ssl.SSLError):
            return False
        return status == 200

    def up(self, timeout: float = 120.0) -> Path:
        """Start (or find running) the control plane; return the kubeconfig path."""
        if self.is_running():
            return self.kubeconfig
        if self._components():
            self.down()  # half-started or crashed: start clean
        bin_dir = self.bin_dir
        for binary in (
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "kubectl",
        ):
            if not (bin_dir / binary).exists():
                raise ControlPlaneError(f"{bin_dir / binary} is missing: run make controlplane-bin")

        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = self.state_dir / "pki"
        write_certificates(pki)
        etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
        scheduler_port = free_port()
        server = f"https://127.0.0.1:{api_port}"
        (self.state_dir / "endpoints.json").write_text(
            json.dumps({"apiserver": server, "etcd": f"http://127.0.0.1:{etcd_port}"})
        )
        self.kubeconfig.write_text(kubeconfig_text(server, pki))
        self.kubeconfig.chmod(0o600)

        components: list[Component] = []
        try:
            etcd_data = self.state_dir / "etcd-data"
            shutil.rmtree(etcd_data, ignore_errors=True)
            components.append(
                self._start(
                    "etcd",
                    [
                        f"--data-dir={etcd_data}",
                        "--name=node0",
                        f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                        f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                        f"--initial-cluster=node0=http://127.0.0.1:{etcd_peer_port}",
                        "--unsafe-no-fsync=true",
                        "--auto-compaction-retention=1",
                        "--quota-backend-bytes=4294967296",
                        "--log-level=warn",
                    ],
                    ports=[etcd_port, etcd_peer_port],
                )
            )
            self._record(components)
            self._wait(components[-1], self._ready("etcd"), timeout, "etcd /health")
            components.append(
                self._start(
                    "kube-apiserver",
                    [
                        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                        "--bind-address=127.0.0.1",
                        "--advertise-address=127.0.0.1",
                        f"--secure-port={api_port}",
                        f"--cert-dir={pki}",
                        f"--tls-cert-file={pki / 'apiserver.crt'}",
                        f"--tls-private-key-file={pki / 'apiserver.key'}",
                        f"--client-ca-file={pki / 'ca.crt'}",
                        "--authorization-mode=RBAC",
                        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                        f"--service-account-key-file={pki / 'sa.pub'}",
                        f"--service-account-signing-key-file={pki / 'sa.key'}",
                        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                        "--allow-privileged=true",
                        "--endpoint-reconciler-type=none",
                        # It taints every new Node not-ready, and only the node
                        # lifecycle controller (left out) would lift the taint.
                        "--disable-admission-plugins=TaintNodesByCondition",
                        f"--profiling={str(self.profiling).lower()}",
                    ],
                    ports=[api_port],
                )
            )
            self._record(components)
            self._wait(components[-1], self._ready("kube-apiserver"), timeout, "its /readyz")
            # The rest only need the API server: start them together.
            controller_manager = self._start(
                "kube-controller-manager",
                [
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={','.join(CONTROLLERS)}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=false",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                ],
                ports=[],
            )
            components.append(controller_manager)
            self._record(components)
            scheduler = self._start(
                "kube-scheduler",
                [
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={scheduler_port}",  # only for /readyz
                ],
                ports=[scheduler_port],
            )
            components.append(scheduler)
            self._record(components)
            key, value = KWOK_NODE_ANNOTATION
            kwok = self._start(
                "kwok",
                [
                    f"--kubeconfig={self.kubeconfig}",
                    f"--config={KWOK_STAGES}",
                    f"--manage-nodes-with-annotation-selector={key}={value}",
                    f"--cidr={POD_CIDR}",
                ],
                ports=[],
                # kwok also reads $KWOK_WORKDIR/kwok.yaml (default ~/.kwok): not
                # the user's file.
                env={"KWOK_WORKDIR": str(self.state_dir / "kwok")},
            )
            components.append(kwok)
            self._record(components)
            started = [controller_manager, scheduler, kwok]
            self._create_fake_node()
            # Ready once its serviceaccount controller made the default SA.
            self._wait(
                controller_manager,
                lambda: self._kubectl_ok("get", "serviceaccount", "default", "-n", "default"),
                timeout,
                "kube-controller-manager (default ServiceAccount)",
                watch=started,
            )
            self._wait(
                scheduler,
                lambda: _https_ok(f"https://127.0.0.1:{scheduler_port}/readyz"),
                timeout,
                "kube-scheduler /readyz",
                watch=started,
            )
            # Ready once it played the node-ready stage on the fake node.
            self._wait(
                kwok,
                lambda: self._node_ready(FAKE_NODE),
                timeout,
                f"kwok (node {FAKE_NODE} Ready)",
                watch=started,
            )
        except BaseException:
            self.down(keep_logs=True)
            raise
        return self.kubeconfig

    def _start(
        self,
        name: str,
        args: list[str],
        ports: list[int],
        env: dict[str, str] | None = None,
        *,
        again: bool = False,
    ) -> Component:
        """Start one component; `again`: a restart, its log appended to."""
        for port in ports:
            if not port_is_free(port):
                raise ControlPlaneError(f"cannot start {name}: port 127.0.0.1:{port} is in use")
        binary = str(self.bin_dir / name)
        log = self.state_dir / f"{name}.log"
        with log.open("ab" if again else "wb") as out:
            process = subprocess.Popen(
                [binary, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the caller must not kill it mid-write
                env={**os.environ, **env} if env else None,
            )
        self._children[process.pid] = process
        return Component(name, process.pid, binary, str(log), list(args), dict(env or {}))

    # -- faults: one component stopped and started again -----------------------------------------

    def _component(self, name: str) -> Component:
        for component in self._components():
            if component.name == name:
                return component
        raise ControlPlaneError(f"no {name} was started in {self.state_dir}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one component ("kube-apiserver", "etcd") and keep its state, to start it again.

        `sig` SIGKILL: a crash, no chance to tidy up. Returns once it has exited.
        """
        self._end(self._component(name), sig, grace=30)

    def start(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped component again as before: the same arguments, hence the same
        ports, certificates and data (etcd's data outlives it). Returns once it is ready."""
        component = self._component(name)
        if component.alive():
            raise ControlPlaneError(f"{name} (pid {component.pid}) is running")
        ready = self._ready(name)
        # Its ports were its own a moment ago: not checked (connections may linger in TIME_WAIT).
        started = self._start(name, component.args, [], component.env, again=True)
        self._record([started if c.name == name else c for c in self._components()])
        self._wait(started, ready, timeout, f"{name} (started again)")

    def _ready(self, name: str) -> Callable[[], bool]:
        """Whether etcd or the API server, as recorded in endpoints.json, is ready."""
        endpoints = json.loads((self.state_dir / "endpoints.json").read_text())
        if name == "etcd":
            return lambda: _http_ok(f"{endpoints['etcd']}/health")
        if name == "kube-apiserver":
            return lambda: self._get(f"{endpoints['apiserver']}/readyz")[0] == 200
        raise ControlPlaneError(f"starting {name} again is not supported")

    def _wait(
        self,
        component: Component,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
        watch: list[Component] | None = None,
    ) -> None:
        """Poll `ready` until true; fail at once if `component` (or one of `watch`) exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for watched in watch or [component]:
                if self._children[watched.pid].poll() is not None:
                    tail = log_tail(Path(watched.log))
                    hint = ""
                    if "address already in use" in tail:
                        hint = " (a port it needs is in use)"
                    raise ControlPlaneError(
                        f"{watched.name} exited before it was ready{hint}; "
                        f"last lines of {watched.log}:\n{tail}"
                    )
            with contextlib.suppress(OSError, ssl.SSLError):
                if ready():
                    return
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{what} not ready after {timeout:.0f}s; last lines of {component.log}:\n"
            f"{log_tail(Path(component.log))}"
        )

    def _api(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """One request to the API server as the admin; returns the status and decoded JSON."""
        server = self._server()
        assert server is not None
        context = self._ssl_context()
        pki = self.state_dir / "pki"
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        request = urllib.request.Request(
            f"{server}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as rsp:
                return int(rsp.status), json.loads(rsp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")

    def _create_fake_node(self) -> None:
        """The Node kwok plays the kubelet of; kwok's node-ready stage makes it Ready."""
        node = fake_node(FAKE_NODE, FAKE_NODE_POD_CIDR)
        status, answer = self._api("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ControlPlaneError(f"cannot create the fake node {FAKE_NODE}: {status} {answer}")

    def _node_ready(self, name: str) -> bool:
        status, node = self._api("GET", f"/api/v1/nodes/{name}")
        if status != 200 or not isinstance(node, dict):
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _kubectl_ok(self, *args: str) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def down(self, keep_logs: bool = False) -> None:
        """Stop the recorded processes (each TERM, then KILL after 10 s) and remove the state."""
        # One at a time, in reverse start order: kwok, the scheduler and the
        # controller manager, then the API server, then etcd. TERMed together,
        # etcd waits for the API server's connections and the API server for
        # etcd, and both take seconds longer.
        for component in reversed(self._components()):
            self._end(component, signal.SIGTERM, grace=10)
        if keep_logs:
            for path in (self.state_dir / "etcd-data", self._pids_file):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _end(self, component: Component, sig: int, grace: float) -> None:
        """Send `sig`, then SIGKILL after `grace` seconds; return once it has exited."""
        if component.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(component.pid, sig)
        deadline = time.monotonic() + grace
        while component.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if component.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(component.pid, signal.SIGKILL)
        child = self._children.pop(component.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)

    def env(self) -> str:
        """Shell exports for using the running control plane by hand."""
        bin_dir = self.bin_dir
        return f'export KUBECONFIG={self.kubeconfig}\nexport PATH="{bin_dir}:$PATH"\n'


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as rsp:
            return int(rsp.status) == 200
    except urllib.error.HTTPError:
        return False


def _https_ok(url: str) -> bool:
    """A component's health endpoint, served with its own self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as rsp:
            return int(rsp.status) == 200
    except urllib.error.HTTPError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="controlplane", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("CONVERGENCE_STATE_DIR", DEFAULT_STATE_DIR)),
    )
    args = parser.parse_args(argv)
    plane = ControlPlane(args.state_dir)
    try:
        if args.command == "up":
            print(plane.up())
        elif args.command == "down":
            plane.down()
        elif args.command == "env":
            if not plane.is_running():
                print("# the control plane is not running: run make controlplane", file=sys.stderr)
            print(plane.env(), end="")
        else:
            print("running" if plane.is_running() else "stopped")
    except ControlPlaneError as exc:
        print(f"controlplane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
