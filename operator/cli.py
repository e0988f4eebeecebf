"""The `convergence` command: `convergence run` starts the operator.

Its arguments and environment (CONVERGENCE_WORKERS, CONVERGENCE_DRIFT_INTERVAL,
CONVERGENCE_LEASE_SECONDS) become one `app.Settings`, from which everything else
is built.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import platform
import socket
import sys

from convergence.operator import logs

# glibc's mallopt parameter for the most malloc arenas, and the operator's limit.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2

# Allocations (net of frees) between two collections of the youngest generation;
# Python's default is 700.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the cycles of the operator's heap less often, and never its start-up objects.

    With 3000 StackResources cached the heap holds about 600,000 tracked objects,
    and the default thresholds ran a full collection over them every few seconds,
    0.4 s each with the GIL held. Timed by `gc.callbacks` over
    `bench_operator.py 1000 3000 --chain=0` (create, update and delete of each):
    72 full collections, 17.3 s, and 22.3 s of collection in all, of 193 s of
    the operator's CPU; the full collections' share grew with the stack (7.6% of
    the CPU at 1000, 11.4% at 3000). At this threshold most objects a step
    allocates are gone before their generation is collected, so far fewer reach
    the oldest one, whose full collections those arrivals set off: 10 full
    collections, 2.9 s, and 7.8 s in all.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most `arenas` arenas (unless MALLOC_ARENA_MAX says otherwise).

    glibc gives each new thread an arena of its own, up to 8 per core, and
    memory freed in one is kept there for that arena's later use. The operator
    runs kopf's executor, its workers and a pool of record creators; when many
    stacks start at once each thread's arena grew to its own peak, and the
    process stayed at the sum. Measured with 10 stacks of 1000 resources
    created at once (`bench_operator.py 100 --chain=0 --spread=10
    --spread-size=1000`): peak RSS 303-304 MiB with glibc's default, 266-275
    MiB with 2 arenas in four runs (272 with one), the create's time and CPU
    no worse (see the README). Trimming the heap every 5 s on top of it gave
    nothing more: the rest is live objects, mostly in pymalloc's arenas.
    Returns whether the limit was set (not on another libc, nor when the
    environment sets one).
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convergence", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (in or out of cluster)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="a namespace to watch (repeatable)"
    )
    run.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint URL"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=8000,
        help="port of the Prometheus /metrics endpoint (0: none)",
    )
    run.add_argument(
        "--require-service-account",
        action="store_true",
        help="multi-tenant mode: every Stack must name spec.serviceAccountName, whose "
        "identity (impersonated) applies its Kubernetes objects",
    )
    run.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=logs.JSON,
        help="json: one object per line with namespace, stack, resource and traversal keys; "
        "text: those fields in brackets after the message (default: %(default)s)",
    )
    run.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        help="serve the Stack validating admission webhook over HTTPS on this port, at "
        "/validate-stack (0: none; needs --webhook-cert and --webhook-key)",
    )
    run.add_argument("--webhook-address", default="0.0.0.0", help="address the webhook listens on")
    run.add_argument("--webhook-cert", default="", help="the webhook's serving certificate (PEM)")
    run.add_argument("--webhook-key", default="", help="the webhook's private key (PEM)")
    run.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this replica's name, different for each replica running at once (default: "
        "$POD_NAME, else the host name); it holds the actions this replica starts",
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="namespace of the replicas' Leases (default: $POD_NAMESPACE, else the first "
        "--namespace, else default)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    if args.webhook_port and not (args.webhook_cert and args.webhook_key):
        parser.error("--webhook-port needs --webhook-cert and --webhook-key")
    limit_malloc_arenas()  # before the operator's modules (and any thread) start

    from convergence.operator import handlers
    from convergence.operator.app import Settings

    settings = Settings(
        namespaces=tuple(args.namespace),
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        require_service_account=args.require_service_account,
        workers=int(os.environ.get("CONVERGENCE_WORKERS", str(Settings.workers))),
        drift_interval=float(os.environ.get("CONVERGENCE_DRIFT_INTERVAL", "30")),
        webhook_port=args.webhook_port,
        webhook_address=args.webhook_address,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
        identity=args.identity,
        lease_seconds=float(
            os.environ.get("CONVERGENCE_LEASE_SECONDS", str(Settings.lease_seconds))
        ),
        lease_namespace=args.lease_namespace or (args.namespace or ["default"])[0],
    )
    logs.configure(args.log_format, verbose=args.verbose)
    if not args.verbose:
        # Watch-event handlers run on every change; their "succeeded" lines are noise.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    tune_gc()
    handlers.run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
