"""A worker whose agent freezes fails liveness (not readiness alone), counts the stall, and
still stops on SIGTERM within its deadline although Faust waits for the frozen event; one
whose agent crashes and is restarted by Faust fails liveness and counts the crash."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import pytest

from stream.kafka.embedded import free_port
from stream.pipeline.worker import FORCED_EXIT_STATUS
from stream.tools.process import WorkerProcess
from tests.integration.frozen_worker import CRASHING_USER, FROZEN_USER
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
STALL_S = 3.0
STOP_DEADLINE_S = 5.0


class FrozenAgentWorker(WorkerProcess):
    """``tests.integration.frozen_worker`` in a child process, stopped by PID."""

    def start(self) -> Self:
        """Start the child (returns at once; see ``wait_ready``)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.frozen_worker"],
                cwd=ROOT,
                env={**self.env, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self


def wait_for_status(worker: WorkerProcess, path: str, status: int, timeout_s: float) -> dict:
    """Poll ``path`` until it answers ``status``; return its body."""
    deadline = time.monotonic() + timeout_s
    got: tuple[int, dict] = (0, {})
    while time.monotonic() < deadline:
        got = worker.get_json(path)
        if got[0] == status:
            return got[1]
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered {status}; last: {got}")


def start_worker(stack: Stack, name: str) -> FrozenAgentWorker:
    """A ready worker of the stack, with short liveness thresholds and stop deadline."""
    env = {
        **stack.env,
        "STREAMRANK_DATA_DIR": str(stack.workdir / f"state-{name}"),
        "STREAMRANK_LIVENESS_CHECK_INTERVAL_S": "0.5",
        "STREAMRANK_LIVENESS_AGENT_STALL_S": str(STALL_S),
        "STREAMRANK_LIVENESS_FETCH_STALL_S": str(STALL_S),
        "STREAMRANK_STOP_DEADLINE_S": str(STOP_DEADLINE_S),
    }
    worker = FrozenAgentWorker(env, free_port(), stack.workdir / f"{name}.log")
    stack.workers.append(worker)  # stopped at teardown if the test fails first
    worker.start().wait_ready(timeout_s=180)
    return worker


def test_a_frozen_agent_fails_liveness_and_sigterm_still_stops_the_worker(stack: Stack) -> None:
    worker = start_worker(stack, "frozen")

    # Idle for longer than the thresholds: live, with nothing waiting anywhere.
    time.sleep(STALL_S + 1.5)
    assert worker.get_json("/healthz") == (200, {"live": True, "reasons": []})
    request = {"request_id": "r", "candidates": ["1", "2"], "k": 2}
    users = ["user-5b1c-before", FROZEN_USER, "user-9d2e-after"]  # the last one waits behind
    for user in users:
        stack.send(stack.settings.rerank_requests_topic, user, {**request, "user_id": user})

    body = wait_for_status(worker, "/healthz", 503, timeout_s=60)
    assert body["live"] is False
    assert [r["kind"] for r in body["reasons"]] == ["agent_stalled"], body
    assert body["reasons"][0]["agent"] == "rerank_requests"
    assert body["reasons"][0]["seconds"] >= STALL_S
    status, ready = worker.get_json("/readyz")
    assert status == 503 and ready["recovered"] is True and ready["live"] is False
    samples = worker.metrics()
    assert samples['streamrank_stalls_total{kind="agent"}'] == 1.0
    assert samples['streamrank_stalls_total{kind="consumer"}'] == 0.0
    assert samples['streamrank_agent_crashes_total{agent="rerank_requests"}'] == 0.0

    # Faust's stop waits for the frozen request to be acknowledged, forever: the deadline ends it.
    started = time.monotonic()
    code = worker.stop(timeout_s=30)
    stopped_in = time.monotonic() - started
    log = worker.log_path.read_text(errors="replace")
    assert code == FORCED_EXIT_STATUS, log[-3000:]
    assert STOP_DEADLINE_S <= stopped_in < STOP_DEADLINE_S + 10
    assert f"did not stop within {STOP_DEADLINE_S:.0f}s" in log
    assert "liveness fails: agent rerank_requests" in log
    assert not [user for user in users if user in log], "no user id in the log"


def test_an_agent_crashed_and_restarted_by_faust_fails_liveness(stack: Stack) -> None:
    worker = start_worker(stack, "crashing")
    request = {"request_id": "r", "candidates": ["1"], "k": 1, "user_id": CRASHING_USER}
    stack.send(stack.settings.rerank_requests_topic, CRASHING_USER, request)

    body = wait_for_status(worker, "/healthz", 503, timeout_s=60)
    assert body["reasons"] == [
        {"kind": "agent_crashed", "agent": "rerank_requests", "crashes": 1, "error": "RuntimeError"}
    ]
    assert worker.get_json("/readyz")[0] == 503
    samples = worker.metrics()
    assert samples['streamrank_agent_crashes_total{agent="rerank_requests"}'] == 1.0
    # Still failing later: a crash is not forgotten while the process lives.
    time.sleep(1.0)
    assert worker.get_json("/healthz")[0] == 503
    worker.stop(timeout_s=30)
    log = worker.log_path.read_text(errors="replace")
    assert "liveness fails: agent rerank_requests crashed (RuntimeError)" in log
