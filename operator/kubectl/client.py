"""The cluster a command talks to: an API client from the user's kubeconfig, and a namespace.

The plugin is a client tool: it acts with whatever identity the kubeconfig
(and `--context`) gives, like kubectl itself, and its namespace is `-n`, else
the context's namespace, else `default`, as kubectl chooses it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import kubernetes
from kubernetes.client import ApiClient

DEFAULT_NAMESPACE = "default"


class PluginError(Exception):
    """A command cannot do what it was asked; the message says why (printed as `error: ...`)."""


@dataclass(frozen=True)
class Target:
    """Where a command acts: the API client and the namespace of the Stack it names."""

    api: ApiClient
    namespace: str


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """The client of `context` in `kubeconfig` (None: KUBECONFIG, else ~/.kube/config)."""
    try:
        api: ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        if namespace is None:
            contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                kubeconfig
            )
            chosen = next((c for c in contexts if c.get("name") == context), None)
            namespace = ((chosen or active or {}).get("context") or {}).get("namespace")
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise PluginError(f"cannot load the kubeconfig: {exc}") from exc
    return Target(api, namespace or DEFAULT_NAMESPACE)


def target(args: argparse.Namespace) -> Target:
    """The target `main` connected to for this command line."""
    found = getattr(args, "target", None)
    if not isinstance(found, Target):
        raise PluginError("no cluster connection (the command was not started by main)")
    return found
