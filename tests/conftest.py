"""Shared fixtures: the MovieLens data directory, the broker, one test's stack.

``STREAMRANK_TEST_BROKER`` points the tests at a running Kafka (e.g. docker-compose);
otherwise the embedded Tansu broker is started once per session and stopped by PID.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.kafka.embedded import EmbeddedBroker
from tests.stack import Stack

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real ml-latest-small directory (STREAMRANK_DATA or ../shared/data)."""
    path = Path(os.environ.get("STREAMRANK_DATA") or DEFAULT_DATA)
    if not (path / "movies.csv").is_file():
        pytest.skip(f"MovieLens data not found at {path}; set STREAMRANK_DATA")
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(bootstrap, profile) of the broker used by the integration and live deployment tests."""
    external = os.environ.get("STREAMRANK_TEST_BROKER")
    if external:
        yield external, "kafka"
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded.bootstrap, "embedded"


@pytest.fixture
def stack(broker: tuple[str, str], tmp_path: Path) -> Iterator[Stack]:
    """Fresh topics and an app id for one test; workers stopped at teardown."""
    s = Stack(broker[0], broker[1], tmp_path)
    try:
        yield s
    finally:
        s.close()
