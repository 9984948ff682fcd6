"""The processes of one fault scenario: broker, workers, encoder service.

Every process is a child of this one, started in its own session and stopped by its PID
(SIGCONT first, in case a scenario left it frozen). Workers keep their state directory
across a kill -9, as a pod keeps its volume: a restarted worker reopens the same RocksDB.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from stream.config import Settings
from stream.errors import StreamrankError
from stream.kafka.admin import ensure_topics
from stream.kafka.embedded import EmbeddedBroker, free_port
from stream.tools.process import EncodeServerProcess, WorkerProcess, log_tail, worker_env

# Co-visitation neighbours kept per row in every scenario: above any row's size, so that
# no row is cut. Where a row is cut depends on the window it is written in, which differs
# between runs by design; uncut rows are sums of the same terms whatever the windows.
UNBOUNDED_NEIGHBOURS = 100_000
_LOG_PROBLEM = re.compile(r"\[(WARNING|ERROR|CRITICAL)\] (.*)")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def process_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process in bytes (None: unknown or gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to one process by PID (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def readiness(slot: WorkerSlot) -> tuple[int, dict[str, Any]]:
    """(status, body) of a worker's readiness page (/readyz, else /healthz); (0, {}) when
    it does not answer."""
    if slot.process is None:
        return 0, {}
    try:
        status, body = slot.process.get_json("/readyz")
        if status == 404:
            status, body = slot.process.get_json("/healthz")
        return status, body if isinstance(body, dict) else {}
    except (OSError, ValueError):
        return 0, {}


@dataclass
class WorkerSlot:
    """One logical worker: a name, a state directory and its successive processes."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: WorkerProcess | None = None
    incarnations: int = 0
    kills: list[float] = field(default_factory=list)  # wall times of kill -9s

    @property
    def pid(self) -> int:
        """PID of the current process."""
        if self.process is None or self.process.process is None:
            raise StreamrankError(f"worker {self.name} is not running")
        return self.process.process.pid

    @property
    def alive(self) -> bool:
        """Whether the current process is running."""
        return (
            self.process is not None
            and self.process.process is not None
            and self.process.process.poll() is None
        )


class ChaosCluster:
    """A scenario's broker, topics (fresh names), workers and encoder service.

    Args:
        settings: The command's settings; with no broker configured an embedded one is
            started (``own_broker`` forces it: a scenario that freezes the broker needs its PID).
        workdir: Logs and worker state.
        worker_overrides: ``STREAMRANK_*`` variables every worker gets on top of the shared ones.
    """

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        worker_overrides: dict[str, str] | None = None,
        own_broker: bool = False,
    ) -> None:
        self.base_settings = settings
        self.workdir = workdir
        self.worker_overrides = dict(worker_overrides or {})
        self.own_broker = own_broker or not settings.bootstrap_servers
        self.broker: EmbeddedBroker | None = None
        self.settings = settings
        self.workers: dict[str, WorkerSlot] = {}
        self.encoders: list[EncodeServerProcess] = []

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> ChaosCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        suffix = uuid.uuid4().hex[:8]
        update: dict[str, object] = {
            "app_id": f"streamrank-chaos-{suffix}",
            "events_topic": f"events-{suffix}",
            "items_topic": f"items-{suffix}",
            "rerank_requests_topic": f"rerank-requests-{suffix}",
            "recommendations_topic": f"recommendations-{suffix}",
            "dead_letters_topic": f"dead-letters-{suffix}",
            "covisit_max_neighbours": UNBOUNDED_NEIGHBOURS,
        }
        if self.own_broker:
            self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log").start()
            update |= {"broker": self.broker.bootstrap, "broker_profile": "embedded"}
        try:
            # The harness reads with the same settings the workers run with: the reference
            # must use their half-lives, weights and neighbour bound.
            self.settings = self.base_settings.model_copy(update=update)
            ensure_topics(self.settings)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker, encoder service and the broker, each by PID."""
        for slot in self.workers.values():
            if slot.alive:
                signal_pid(slot.pid, signal.SIGCONT)
            if slot.process is not None:
                slot.process.stop(timeout_s=15)
        for encoder in self.encoders:
            if encoder.process is not None and encoder.process.poll() is None:
                signal_pid(encoder.process.pid, signal.SIGCONT)
            encoder.stop(timeout_s=15)
        if self.broker is not None and self.broker.pid is not None:
            signal_pid(self.broker.pid, signal.SIGCONT)
            self.broker.stop()

    # --- workers -------------------------------------------------------------------------

    def worker_env(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of worker ``name``: the shared settings, its state directory, overrides."""
        env = worker_env(self.settings, self.workdir / f"state-{name}")
        env["STREAMRANK_COVISIT_MAX_NEIGHBOURS"] = str(self.settings.covisit_max_neighbours)
        return {**env, **self.worker_overrides, **(extra or {})}

    def start_worker(self, name: str, extra_env: dict[str, str] | None = None) -> WorkerSlot:
        """Start worker ``name`` (returns at once; see :meth:`wait_ready`)."""
        slot = WorkerSlot(name, self.worker_env(name, extra_env), self.workdir / f"worker-{name}.log")
        self.workers[name] = slot
        return self._launch(slot)

    def _launch(self, slot: WorkerSlot) -> WorkerSlot:
        # A fresh port for each incarnation: the killed one's may linger in TIME_WAIT.
        slot.process = WorkerProcess(slot.env, free_port(), slot.log_path).start()
        slot.incarnations += 1
        return slot

    def wait_ready(
        self, names: list[str] | None = None, timeout_s: float = 300.0, min_items: int = 0
    ) -> None:
        """Wait until each named worker (default: all) is ready with ``min_items`` encoded."""
        for name in names or list(self.workers):
            slot = self.workers[name]
            deadline = time.monotonic() + timeout_s
            while True:
                if not slot.alive:
                    raise StreamrankError(f"worker {name} exited\n{log_tail(slot.log_path)}")
                status, body = readiness(slot)
                if status == 200 and body.get("items", 0) >= min_items:
                    break
                if time.monotonic() > deadline:
                    raise StreamrankError(
                        f"worker {name} not ready after {timeout_s:.0f} s (last answer {status}: {body})\n"
                        + log_tail(slot.log_path)
                    )
                time.sleep(0.25)

    def wait_group_stable(self, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
        """Wait until every live worker has answered ready for ``quiet_s``: the group's
        rebalance is over before the faults begin."""
        deadline = time.monotonic() + timeout_s
        ready_since: float | None = None
        while time.monotonic() < deadline:
            slots = [s for s in self.workers.values() if s.alive]
            if slots and all(self._healthy(s) for s in slots):
                ready_since = ready_since or time.monotonic()
                if time.monotonic() - ready_since >= quiet_s:
                    return
            else:
                ready_since = None
            time.sleep(0.25)
        raise StreamrankError("the workers did not settle into one group")

    @staticmethod
    def _healthy(slot: WorkerSlot) -> bool:
        return readiness(slot)[0] == 200

    def kill(self, name: str) -> float:
        """kill -9 worker ``name``; returns the wall time of the kill."""
        slot = self.workers[name]
        pid = slot.pid
        killed_at = time.time()
        signal_pid(pid, signal.SIGKILL)
        if slot.process is not None and slot.process.process is not None:
            slot.process.process.wait()  # reap it: the PID is not reused while we hold it
        slot.kills.append(killed_at)
        return killed_at

    def restart(self, name: str) -> WorkerSlot:
        """Start worker ``name`` again on its state directory (returns at once)."""
        slot = self.workers[name]
        if slot.alive:
            raise StreamrankError(f"worker {name} is still running")
        return self._launch(slot)

    def worker_rss(self, name: str) -> int | None:
        """Resident memory of worker ``name``'s current process, bytes."""
        slot = self.workers[name]
        return process_rss_bytes(slot.pid) if slot.alive else None

    def log_tails(self, max_chars: int = 2000) -> str:
        """The end of every worker's log, to explain a failure."""
        return "\n".join(log_tail(slot.log_path, max_chars) for slot in self.workers.values())

    def log_warnings(self) -> Counter[str]:
        """The workers' warnings and errors, numbers masked so that repeats count as one."""
        found: Counter[str] = Counter()
        for slot in self.workers.values():
            if not slot.log_path.exists():
                continue
            for line in slot.log_path.read_text(errors="replace").splitlines():
                match = _LOG_PROBLEM.search(line)
                if match:
                    found[f"{match[1]} {_NUMBER.sub('N', match[2])[:160]}"] += 1
        return found

    # --- broker and encoder service ------------------------------------------------------

    @property
    def broker_pid(self) -> int:
        """PID of the embedded broker."""
        if self.broker is None or self.broker.pid is None:
            raise StreamrankError("this scenario needs the embedded broker (leave --broker unset)")
        return self.broker.pid

    def start_encoder(self, name: str = "encoder", port: int | None = None) -> EncodeServerProcess:
        """Start an encoder service (CPU) on ``port`` and wait until its model is loaded."""
        server = EncodeServerProcess(
            {"STREAMRANK_ENCODER_DEVICE": "cpu"},
            port or free_port(),
            self.workdir / f"{name}.log",
        ).start()
        self.encoders.append(server)
        server.wait_ready(timeout_s=300)
        return server
