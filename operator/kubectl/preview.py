"""`kubectl convergence preview -f stack.yaml`: what applying a Stack manifest would do.

The command asks the operator, as any client may: it creates a StackPreview
carrying the manifest's spec and naming its Stack, waits until the operator
has answered it in its status, prints the answer and deletes the StackPreview.
It does not compute the preview itself, because the operator's answer is the
one that counts: its engine is the one that will carry out the update, with
the resource types installed beside it (a replacement a type decides by a
dry-run apply included), the template revision the Stack is at, and
`parametersFrom` read with the Stack's identity (its ServiceAccount), not the
user's. So the user needs the right to create StackPreviews, not to read the
stack's records or its parameter sources, and the answer is the same whoever
asks.

Output: a table of every resource with what would happen to it (`-o table`,
the default), or the StackPreview's answer as YAML or JSON. The exit status
is 0 when there is a preview, 1 when there is none (an invalid template, a
parameter source that cannot be read, no answer in time): the message says
why.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import kubernetes
import yaml
from kubernetes.client import ApiClient

from convergence.operator.engine.preview import CATEGORIES
from convergence.operator.kube.api import api_error, is_not_found
from convergence.operator.kube.names import API_VERSION, GROUP, STACK_PREVIEWS, VERSION

# Seconds to wait for the operator's answer, and between two looks.
DEFAULT_TIMEOUT = 60.0
POLL_INTERVAL = 0.25
TABLE, YAML, JSON = "table", "yaml", "json"
# What the table calls each list.
ACTIONS = {
    "added": "add",
    "updated": "update",
    "replaced": "replace",
    "deleted": "delete",
    "unchanged": "none",
}


class PreviewError(Exception):
    """No preview: the message says why (printed as `error: ...`)."""


def register(subparsers: Any) -> None:
    """The `preview` sub-command (the namespace and the cluster come from the main's options)."""
    parser = subparsers.add_parser(
        "preview",
        help="show what applying a Stack manifest would do, changing nothing",
        description=(
            "Ask the operator what applying a Stack manifest would do: which resources it "
            "would add, update in place, replace, delete or leave unchanged."
        ),
    )
    parser.add_argument(
        "-f", "--filename", required=True, help="the Stack manifest (YAML or JSON; - for stdin)"
    )
    parser.add_argument(
        "--delete", action="store_true", help="preview deleting the manifest's Stack instead"
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=(TABLE, YAML, JSON),
        default=TABLE,
        help="output format (default: table)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the operator's answer (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Preview the manifest of `args.filename`; print the answer; 0 if there is one."""
    try:
        manifest = read_manifest(args.filename)
        api, namespace = _connection(args, manifest)
        status = preview(api, namespace, manifest, delete=args.delete, timeout=args.timeout)
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except kubernetes.client.ApiException as exc:
        print(f"error: {api_error(exc)}", file=sys.stderr)
        return 1
    ready = status.get("phase") == "Ready"
    if args.output == TABLE:
        # No preview, no table: the error below says why.
        sys.stdout.write(table(status) if ready else "")
    else:
        answer = {key: status[key] for key in ANSWER_FIELDS if key in status}
        if args.output == JSON:
            sys.stdout.write(json.dumps(answer, indent=2) + "\n")
        else:
            sys.stdout.write(yaml.safe_dump(answer, sort_keys=False))
    sys.stdout.flush()
    if not ready:
        print(
            f"error: no preview ({status.get('reason')}): {status.get('message')}",
            file=sys.stderr,
        )
        return 1
    return 0


ANSWER_FIELDS = ("stack", "operation", "phase", "reason", "message", *CATEGORIES)


def read_manifest(filename: str) -> dict[str, Any]:
    """The Stack document of a manifest file (the first one of kind Stack)."""
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        documents = list(yaml.safe_load_all(text))
    except (OSError, yaml.YAMLError) as exc:
        raise PreviewError(f"cannot read {filename}: {exc}") from exc
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "Stack":
            return document
    raise PreviewError(f"{filename} holds no Stack")


def _connection(args: argparse.Namespace, manifest: Mapping[str, Any]) -> tuple[ApiClient, str]:
    """The API client and the namespace: the main's connection when it made one (`target`),
    else one of its options; the manifest's namespace over the default one."""
    given = getattr(args, "target", None)
    if given is not None:
        api, namespace = given.api, given.namespace
    else:
        try:
            kubeconfig = getattr(args, "kubeconfig", None)
            context = getattr(args, "context", None)
            api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise PreviewError(f"cannot load the kubeconfig: {exc}") from exc
        namespace = getattr(args, "namespace", None) or "default"
    manifest_namespace = (manifest.get("metadata") or {}).get("namespace")
    if manifest_namespace and getattr(args, "namespace", None) not in (None, manifest_namespace):
        raise PreviewError(
            f"the manifest's namespace {manifest_namespace!r} is not -n {args.namespace!r}"
        )
    return api, str(manifest_namespace or namespace)


def preview_body(manifest: Mapping[str, Any], *, delete: bool = False) -> dict[str, Any]:
    """The StackPreview asking about `manifest` (a Stack): its spec, naming its Stack."""
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        raise PreviewError("the Stack manifest has no metadata.name")
    spec = dict(manifest.get("spec") or {})
    if delete:
        spec = {"delete": True}
    elif "template" not in spec:
        raise PreviewError(f"Stack {name} has no spec.template")
    return {
        "apiVersion": API_VERSION,
        "kind": "StackPreview",
        "metadata": {"generateName": f"{name}-preview-"[:240]},
        "spec": {**spec, "stackName": name},
    }


def preview(
    api: ApiClient,
    namespace: str,
    manifest: Mapping[str, Any],
    *,
    delete: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Create the StackPreview, wait for its answer (its status), delete it; the status."""
    objects = kubernetes.client.CustomObjectsApi(api)
    created = cast(
        dict[str, Any],
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, STACK_PREVIEWS, preview_body(manifest, delete=delete)
        ),
    )
    name = created["metadata"]["name"]
    try:
        return _answer(objects, namespace, name, created["metadata"]["generation"], timeout)
    finally:
        try:
            objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, STACK_PREVIEWS, name)
        except kubernetes.client.ApiException as exc:
            if not is_not_found(exc):
                raise


def _answer(
    objects: kubernetes.client.CustomObjectsApi,
    namespace: str,
    name: str,
    generation: int,
    timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = cast(
            dict[str, Any],
            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, STACK_PREVIEWS, name),
        )
        status = dict(body.get("status") or {})
        if status.get("observedGeneration") == generation and status.get("phase"):
            return status
        if time.monotonic() > deadline:
            raise PreviewError(
                f"no answer to StackPreview {namespace}/{name} in {timeout:g}s: "
                "is the convergence operator running and watching this namespace?"
            )
        time.sleep(POLL_INTERVAL)


def table(status: Mapping[str, Any]) -> str:
    """One row per resource, in Heat's order of the lists, then a summary line."""
    headers = ("RESOURCE", "TYPE", "ACTION", "DETAILS")
    rows = [
        (change["name"], change["type"], ACTIONS[category], _details(category, change))
        for category in CATEGORIES
        for change in status.get(category) or ()
    ]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    operation = status.get("operation", "update")
    lines.append("")
    lines.append(f"{operation} of stack {status.get('stack')}: {status.get('message', '')}")
    return "\n".join(lines) + "\n"


def _details(category: str, change: Mapping[str, Any]) -> str:
    parts = []
    if category == "replaced":
        parts.append(str(change.get("reason") or "replaced"))
    else:
        if change.get("reason"):  # an update in place with a reason: a FAILED nested stack
            parts.append(str(change["reason"]))
        if change.get("properties"):
            parts.append("changes " + ", ".join(change["properties"]))
    if change.get("unknown"):
        parts.append("not known until applied: " + ", ".join(change["unknown"]))
    return "; ".join(parts)
