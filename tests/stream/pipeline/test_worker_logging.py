"""The worker logs at its level only: debug calls of its libraries build no records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from stream.pipeline.worker import faust_worker


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_library_debug_calls_are_not_enabled(level: str, restored_root_logger: None) -> None:
    app = faust.App(f"test-logging-{level}", broker="kafka://127.0.0.1:1")
    worker = faust_worker(app, level)
    worker._setup_logging()  # what execute_from_commandline does first
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    assert logging.getLogger().level == logging.getLevelName(level.upper())
