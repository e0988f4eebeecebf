"""The fake Node kwok plays the kubelet of, in the local control plane (controlplane.py)."""

from __future__ import annotations

from typing import Any

# Pod IPs kwok hands out: the fake node's podCIDR, inside kwok's --cidr.
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_POD_CIDR = "10.244.0.0/24"
FAKE_NODE = "kwok-node-0"
# kwok manages the nodes with this annotation (and no others): add more fake
# nodes by creating Nodes annotated so.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


def fake_node(name: str, pod_cidr: str) -> dict[str, Any]:
    """The Node `name`, annotated for kwok to manage; kwok's node-ready stage makes it Ready."""
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        # A Node's status may be set on create; the conditions are kwok's.
        "status": {
            "addresses": [
                # Loopback: a kubectl logs/exec on its pods fails at once.
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "500"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "500"},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "kwok",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "",
                "osImage": "",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }
