"""`kubectl convergence retry STACK`: converge the stack to its spec again, as it is.

Re-issuing a Heat stack update with the same template: applying an unchanged
manifest changes no generation, so after a failure this is how the operation
is tried again. Writes a new value of `convergence.dev/retry`.
"""

from __future__ import annotations

import argparse
from typing import Any

from convergence.operator.controllers.requests import RETRY
from convergence.operator.kubectl.requests import add_request, new_value, request


def register(subparsers: Any) -> None:
    parser = add_request(subparsers, "retry", "try the stack's spec again", __doc__ or "")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return request(args, "retry", RETRY, new_value())
