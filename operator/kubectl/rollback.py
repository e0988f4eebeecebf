"""`kubectl convergence rollback STACK`: converge the stack back to the last template in service.

Also while an operation is in progress (a create in progress rolls back to
nothing). Writes a new value of `convergence.dev/rollback`; when the stack's
state does not allow it, the operator refuses it with an `OperationRefused`
Event and statusReason.
"""

from __future__ import annotations

import argparse
from typing import Any

from convergence.operator.controllers.requests import ROLLBACK
from convergence.operator.kubectl.requests import add_request, new_value, request


def register(subparsers: Any) -> None:
    parser = add_request(
        subparsers, "rollback", "roll back to the last template in service", __doc__ or ""
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return request(args, "rollback", ROLLBACK, new_value())
