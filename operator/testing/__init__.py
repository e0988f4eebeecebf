"""Test and demo support: the local control plane launcher."""
