"""Callers of a consistent read share it, and never take an answer older than their question."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from convergence.operator.kube.joined_reads import JoinedReads


class World:
    """What a read answers: the value at the moment the read is sent; each read can be held."""

    def __init__(self) -> None:
        self.value = "old"
        self.sent: list[str] = []
        self.release = threading.Event()
        self.in_flight = threading.Event()
        self.fail = False

    def send(self, key: str) -> str:
        seen = self.value
        self.sent.append(f"{key}={seen}")
        self.in_flight.set()
        assert self.release.wait(5.0)
        if self.fail:
            raise RuntimeError("refused")
        return seen


def _ask(reads: JoinedReads[str, str], key: str, answers: dict[str, object], who: str) -> None:
    try:
        answers[who] = reads.read(key)
    except RuntimeError as exc:
        answers[who] = exc


def _start(reads: JoinedReads[str, str], answers: dict[str, object], who: str) -> threading.Thread:
    thread = threading.Thread(target=_ask, args=(reads, "t", answers, who))
    thread.start()
    return thread


def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_callers_asking_while_a_read_is_in_flight_share_the_next_read_not_that_one() -> None:
    world = World()
    reads: JoinedReads[str, str] = JoinedReads(world.send)
    answers: dict[str, object] = {}
    first = _start(reads, answers, "first")
    assert world.in_flight.wait(5.0)
    # The world changes after the first read was sent; two callers ask now.
    world.value = "new"
    later = [_start(reads, answers, who) for who in ("second", "third")]
    _until(lambda: reads._keys["t"].waiting == 3)
    world.in_flight.clear()
    world.release.set()
    for thread in (first, *later):
        thread.join(5.0)
    assert answers == {"first": "old", "second": "new", "third": "new"}
    # Two reads for three callers: the two later ones shared the read sent after they asked.
    assert world.sent == ["t=old", "t=new"]
    assert (reads.sent, reads.answered) == (2, 3)
    assert reads._keys == {}


def test_a_caller_alone_sends_its_own_read_each_time() -> None:
    world = World()
    world.release.set()
    reads: JoinedReads[str, str] = JoinedReads(world.send)
    assert reads.read("a") == "old"
    world.value = "new"
    assert reads.read("a") == "new"
    assert reads.read("b") == "new"
    assert world.sent == ["a=old", "a=new", "b=new"]


def test_a_refused_read_is_raised_to_its_callers_and_the_next_caller_reads_again() -> None:
    world = World()
    world.fail = True
    reads: JoinedReads[str, str] = JoinedReads(world.send)
    answers: dict[str, object] = {}
    first = _start(reads, answers, "first")
    assert world.in_flight.wait(5.0)
    second = _start(reads, answers, "second")
    _until(lambda: reads._keys["t"].waiting == 2)
    world.release.set()
    first.join(5.0)
    second.join(5.0)
    assert all(isinstance(answers[who], RuntimeError) for who in ("first", "second")), answers
    world.fail = False
    assert reads.read("t") == "old"
    assert len(world.sent) == 3


def test_a_sender_stopped_mid_read_leaves_the_waiters_to_send_anew() -> None:
    world = World()
    stops = [True]

    def send(key: str) -> str:
        answer = world.send(key)
        if stops and stops.pop():
            raise SystemExit("the thread is told to stop")
        return answer

    reads: JoinedReads[str, str] = JoinedReads(send)
    answers: dict[str, object] = {}

    def stopped() -> None:
        try:
            reads.read("t")
        except SystemExit as exc:
            answers["first"] = exc

    first = threading.Thread(target=stopped)
    first.start()
    assert world.in_flight.wait(5.0)
    world.value = "new"
    second = _start(reads, answers, "second")
    _until(lambda: reads._keys["t"].waiting == 2)
    world.release.set()
    first.join(5.0)
    second.join(5.0)
    assert isinstance(answers["first"], SystemExit)
    assert answers["second"] == "new"
    assert world.sent == ["t=old", "t=new"]
