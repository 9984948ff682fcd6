"""The worker logs at its level only: debug calls of its libraries build no records."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import faust
import pytest

from stream.pipeline.worker import faust_worker


@pytest.fixture
def restored_root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    # Setting up the worker's logging redirects sys.stdout and sys.stderr into the logs, and
    # ending the redirect sets them to the process's own: later tests read their output.
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_library_debug_calls_are_not_enabled(level: str, restored_root_logger: None) -> None:
    app = faust.App(f"test-logging-{level}", broker="kafka://127.0.0.1:1")
    worker = faust_worker(app, level)
    worker._setup_logging()  # what execute_from_commandline does first
    try:
        assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
        assert logging.getLogger().level == logging.getLevelName(level.upper())
    finally:
        # Ends the redirect now, while the fixture can restore the streams, not whenever the
        # worker happens to be collected.
        worker.exit_stack.close()
