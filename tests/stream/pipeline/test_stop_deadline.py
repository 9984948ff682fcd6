"""A stopping worker ends by its deadline, whatever Faust waits for."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import faust
import pytest

from stream.pipeline.worker import FORCED_EXIT_STATUS, DeadlineWorker, StopDeadline, faust_worker


def test_the_deadline_ends_the_process_with_its_status_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    exits: list[int] = []
    deadline = StopDeadline(0.05, exit_process=exits.append)
    with caplog.at_level(logging.ERROR, logger="stream.pipeline.worker"):
        deadline.start()
        deadline.start()  # a second stop request keeps the first countdown
        for _ in range(200):
            if exits:
                break
            time.sleep(0.01)
        time.sleep(0.1)
    assert exits == [FORCED_EXIT_STATUS]
    assert "did not stop within" in caplog.text


def test_a_cancelled_deadline_does_nothing() -> None:
    exits: list[int] = []
    deadline = StopDeadline(0.05, exit_process=exits.append)
    deadline.start()
    deadline.cancel()
    time.sleep(0.2)
    assert exits == []


def test_stopping_the_worker_starts_its_deadline() -> None:
    class Recorded(StopDeadline):
        started = 0

        def start(self) -> None:
            self.started += 1

    app = faust.App("test-stop-deadline", broker="kafka://127.0.0.1:1")
    worker = faust_worker(app, "info", stop_deadline_s=5.0)
    assert isinstance(worker, DeadlineWorker)
    assert worker.stop_deadline is not None and worker.stop_deadline.seconds == 5.0
    recorded = worker.stop_deadline = Recorded(5.0)
    asyncio.run(asyncio.wait_for(worker.stop(), timeout=30))
    assert recorded.started == 1
    assert faust_worker(app, "info").stop_deadline is None


def test_a_hung_process_exits_at_the_deadline() -> None:
    # The real exit, in a child that would otherwise sleep for a minute with a thread that
    # never ends (what a hung Faust stop looks like from outside).
    script = (
        "import threading, time\n"
        "from stream.pipeline.worker import StopDeadline\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "StopDeadline(1.0).start()\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.returncode == FORCED_EXIT_STATUS
    assert time.monotonic() - started < 30  # the import takes most of it
    assert "did not stop within 1s" in child.stderr
    assert "Thread" in child.stderr, "the threads' stacks show where it hung"
