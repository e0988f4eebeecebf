"""Which operator replicas are alive: one Lease per replica, renewed while it runs.

Every replica runs the steps of every record it hears of; what keeps two of
them from carrying out the same action at once is the record's lock holder
(engine/actions.py, `_held_here`): the replica that started an action holds
it until it ends, and another replica takes it over only once the holder is
dead. This module says who is dead, as Heat's engine liveness check did with
its service table:

- each replica keeps a Lease `convergence-replica-<identity>` in the
  operator's namespace (coordination.k8s.io/v1), renewing it every
  `RENEW_INTERVAL` seconds, and deletes it when it stops gracefully (so a
  replica started again under the same identity, or its peers, need not wait);
- each replica lists the replica Leases every `RENEW_INTERVAL` and judges
  them by its own clock, as Kubernetes' leader election does: a replica is
  alive while its Lease changed (a renewal) within the last
  `LEASE_DURATION` seconds of this replica's observation. Clocks of different
  machines are never compared; a Lease first seen counts as just renewed.
- a replica is dead when its Lease is gone, or has not changed for
  `LEASE_DURATION`. Until the first listing answered, every other replica
  counts as alive (nothing is taken over on a guess).

- a replica fences itself off (`fence`): it acts on reality only while its own
  Lease was renewed within `LEASE_DURATION - RENEW_INTERVAL` by its own clock,
  and a step acts only if no break came since it began (the engine compares
  the period number before and after: engine/actions.py, `_fenced`). A
  replica frozen, or cut off from the API, for longer than that may have had
  its actions taken over; what it read before must not be acted on. A replica
  whose listing, sent within that same time, showed no other replica's Lease
  has nobody to fear and goes on; an older listing says nothing of a peer
  started since, which may already count this one dead.

The identity is given (`convergence run --identity`, in a pod its name);
it must differ between replicas running at once. This replica is always
alive to itself.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient

from convergence.operator.kube.api import ApiNotFound, is_conflict, request
from convergence.operator.kube.names import GROUP

logger = logging.getLogger("convergence.operator")

# Seconds without a renewal after which a replica is dead.
LEASE_DURATION = 15.0
# Seconds between renewals of this replica's Lease and listings of the others.
RENEW_INTERVAL = 5.0
LEASE_PREFIX = "convergence-replica-"
REPLICA_LABEL = f"{GROUP}/replica"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def lease_name(identity: str) -> str:
    """The Lease of replica `identity` (an object name: lower case, at most 253 chars)."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", identity.lower()).strip("-.")
    return f"{LEASE_PREFIX}{cleaned}"[:253]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicaLeases:
    """This replica's Lease, renewed on a thread of its own, and what it sees of the others."""

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        identity: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        duration: float = LEASE_DURATION,
        interval: float = RENEW_INTERVAL,
        on_dead: Callable[[str], object] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.interval = interval
        self._clock = clock
        self._path = LEASES.format(namespace=namespace)
        # identity -> (the Lease's last renewTime seen, when this replica saw it change).
        self._seen: dict[str, tuple[str, float]] = {}
        # Called (from the renewing thread) once for each replica found dead, so that
        # the actions it held are looked at (their records may hear of nothing else).
        self.on_dead = on_dead
        self._reported: set[str] = set()
        self._alive_before: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # When (this replica's clock) the last renewal that succeeded was sent, and the
        # number of unbroken periods of renewals so far (see `fence`).
        self._renewed_at: float | None = None
        self._periods = 0
        # The other replicas whose Leases the last listing that answered showed, and when
        # (this replica's clock) that listing was sent.
        self._others: set[str] = set()
        self._listed_at: float | None = None

    # -- what the engine asks ----------------------------------------------------------------

    def alive(self, identity: str) -> bool:
        """Whether the replica `identity` is alive as far as this one can tell."""
        if identity == self.identity:
            return True
        with self._lock:
            if self._listed_at is None:
                return True
            seen = self._seen.get(identity)
        return seen is not None and self._clock() - seen[1] < self.duration

    def fresh(self) -> bool:
        """Whether this replica's own Lease was renewed recently enough that no peer can
        have judged it dead yet, with a renewal interval to spare for the write in hand.

        A peer counts `duration` from when it saw the renewal, which is after it
        was sent; so up to `duration - interval` after sending it, this replica
        may act on what it holds. After that (renewals failing, or the process
        frozen and resumed) it may not until a renewal succeeds.
        """
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.duration - self.interval

    def fence(self) -> int | None:
        """The period of unbroken renewals this replica is in (a number that changes after
        each break), or None while it is not `fresh` and may have peers.

        A replica whose last listing showed no other replica's Lease (or that
        could never list them) has nobody to take its actions over, so it goes
        on acting when it cannot renew its own: a single operator serving a
        namespace being deleted, where its Lease can no longer be written, must
        still finish deleting the stacks; so must one without rights to Leases.
        That listing must be as recent as a renewal would have to be: a peer
        that started after it, and saw this replica's last renewal, counts it
        dead `duration` after that (the listing was sent after the renewal, as
        `beat` does both). A replica frozen past that, holding a listing from
        before its peer started, would otherwise write over what the peer did.
        """
        if self.fresh() or self._alone():
            return self._periods
        return None

    def _alone(self) -> bool:
        """Whether no other replica can have taken this one's actions over: its last
        listing, sent within `duration - interval`, showed none (or it never listed)."""
        listed = self._listed_at
        if listed is None:
            return True
        return not self._others and self._clock() - listed < self.duration - self.interval

    def resumed(self) -> bool:
        """Whether this replica had a break since its first renewal (see `fence`)."""
        return self._periods > 1

    def _renewed(self, sent: float) -> None:
        """Note a renewal sent at `sent` that succeeded; a new period if it came too late."""
        if not self.fresh():
            self._periods += 1
        self._renewed_at = sent

    def alive_replicas(self) -> list[str]:
        """The identities judged alive now (this one included), sorted."""
        with self._lock:
            known = list(self._seen)
        return sorted({self.identity, *(i for i in known if self.alive(i))})

    # -- the Lease ---------------------------------------------------------------------------

    def start(self) -> None:
        """Renew and observe on a daemon thread until `stop`."""
        self.beat()
        threading.Thread(target=self._run, name="replica-lease", daemon=True).start()

    def stop(self) -> None:
        """Stop renewing and delete this replica's Lease (its actions are free at once)."""
        self._stopped.set()
        try:
            request(self.api, "DELETE", f"{self._path}/{lease_name(self.identity)}")
        except ApiNotFound:
            pass
        except Exception as exc:
            logger.warning("could not delete this replica's Lease: %s", exc)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Renew this replica's Lease, then look at every replica's; never raises."""
        # An API server away for a moment: the peers' Leases will tell once it is back.
        try:
            self.renew()
        except Exception as exc:
            logger.warning("replica Lease not renewed: %s", exc)
        try:
            self.observe()
        except Exception as exc:
            logger.warning("replica Leases not read: %s", exc)

    def renew(self) -> None:
        """Write this replica's renewTime (creating the Lease the first time)."""
        name = lease_name(self.identity)
        sent = self._clock()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _now(),
        }
        try:
            request(
                self.api,
                "PATCH",
                f"{self._path}/{name}",
                body={"spec": spec},
                content_type="application/merge-patch+json",
            )
            self._renewed(sent)
            return
        except ApiNotFound:
            pass
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {REPLICA_LABEL: "true"}},
            "spec": {**spec, "acquireTime": spec["renewTime"]},
        }
        try:
            request(self.api, "POST", self._path, body=body)
        except Exception as exc:
            if not is_conflict(exc):  # made meanwhile: renewed next time
                raise
            return
        self._renewed(sent)

    def observe(self) -> None:
        """List the replica Leases and note which changed since the last look."""
        sent = self._clock()
        listed = request(
            self.api, "GET", self._path, query=[("labelSelector", f"{REPLICA_LABEL}=true")]
        )
        now = self._clock()
        current: dict[str, str] = {}
        for item in listed.get("items") or []:
            spec = item.get("spec") or {}
            identity = spec.get("holderIdentity")
            if identity:
                current[str(identity)] = str(spec.get("renewTime") or "")
        with self._lock:
            for identity, renewed in current.items():
                before = self._seen.get(identity)
                if before is None or before[0] != renewed:
                    self._seen[identity] = (renewed, now)
            for gone in set(self._seen) - set(current):
                del self._seen[gone]
            self._others = set(current) - {self.identity}
            self._listed_at = sent
            known = set(self._seen)
        alive = {identity for identity in known if self.alive(identity)}
        # Dead now: a Lease that expired, or one deleted since it was alive (a graceful stop).
        dead = (known - alive) | (self._alive_before - known)
        newly = dead - self._reported - {self.identity}
        # A replica alive again (started under the same identity) may die again later.
        self._reported = (self._reported | newly) - alive
        self._alive_before = alive
        if self.on_dead is not None:
            for identity in sorted(newly):
                logger.info("replica %s is dead: its actions are taken over", identity)
                self.on_dead(identity)
