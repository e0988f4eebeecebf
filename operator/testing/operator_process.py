"""The operator as a subprocess for tests and the demo, so it can be killed like a real pod."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

# What follows `python` to start the `convergence` command.
CLI = ("-m", "convergence.operator.cli")


class OperatorProcess:
    """`convergence run` against a kubeconfig, its output in a log file."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        entry: Sequence[str] = CLI,
    ) -> None:
        self.kubeconfig = kubeconfig
        # A wrapper may stand in for CLI (the benchmark's profiler does) if it runs the same main.
        self.entry = tuple(entry)
        # Extra environment of the operator (e.g. CONVERGENCE_DRIFT_INTERVAL).
        self.env = dict(env or {})
        self.log = log
        self.args = args or ("--all-namespaces",)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONSAFEPATH": "1",
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *self.entry,
                    "run",
                    "--liveness",
                    "",
                    *self.args,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        """The operator's process id while it runs (its /proc figures: CPU time, peak memory)."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop it (SIGKILL by default: no chance to tidy up, like a crashed pod)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP), as a stalled machine or a process cut off for a while is."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen operator run on (SIGCONT) from where it was, with what it read then."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop it gracefully, then for sure."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def eventually(
        self,
        what: str,
        probe: Callable[[], Any],
        timeout: float = 120,
        seen: Callable[[], Any] | None = None,
    ) -> Any:
        """Poll `probe` until it returns something truthy, and return that.

        On timeout, fail naming `what` (and what `seen` finds then), with the
        operator's log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                found = f" (found {seen()!r})" if seen is not None else ""
                raise AssertionError(
                    f"timed out waiting for {what}{found}; operator log:\n{self.tail()}"
                )
            time.sleep(0.3)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
