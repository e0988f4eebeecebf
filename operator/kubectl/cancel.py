"""`kubectl convergence cancel STACK [--no-rollback]`: stop the create or update in progress.

Like `openstack stack cancel`: the stack converges back to the last template
that went in service (updates only, as in Heat), or with `--no-rollback` the
operation ends *_FAILED "Stack UPDATE cancelled" (running resource actions
finish, nothing new starts). Writes `convergence.dev/cancel=rollback` or
`=no-rollback`.
"""

from __future__ import annotations

import argparse
from typing import Any

from convergence.operator.controllers.requests import CANCEL, CANCEL_VALUES
from convergence.operator.kubectl.requests import add_request, request

ROLLBACK, NO_ROLLBACK = CANCEL_VALUES


def register(subparsers: Any) -> None:
    parser = add_request(subparsers, "cancel", "cancel the operation in progress", __doc__ or "")
    parser.add_argument(
        "--no-rollback", action="store_true", help="end the operation FAILED, without rollback"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return request(args, "cancel", CANCEL, NO_ROLLBACK if args.no_rollback else ROLLBACK)
