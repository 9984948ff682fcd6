"""One test's broker topics, worker processes, producer and output readers.

Each ``Stack`` gets its own topics and consumer group (uuid names); the broker comes from
the ``broker`` fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.kafka.admin import consumer, ensure_topics, producer
from stream.kafka.embedded import free_port
from stream.pipeline.positions import is_internal
from stream.tools.process import WorkerProcess


class Stack:
    """One test's topics, workers, producer and output readers."""

    def __init__(self, bootstrap: str, profile: str, workdir: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.workdir = workdir
        self.env = {
            "STREAMRANK_BROKER": bootstrap,
            "STREAMRANK_BROKER_PROFILE": profile,
            "STREAMRANK_APP_ID": f"streamrank-test-{suffix}",
            "STREAMRANK_TOPIC_PARTITIONS": "4",
            "STREAMRANK_EVENTS_TOPIC": f"events-{suffix}",
            "STREAMRANK_ITEMS_TOPIC": f"items-{suffix}",
            "STREAMRANK_RERANK_REQUESTS_TOPIC": f"rerank-requests-{suffix}",
            "STREAMRANK_RECOMMENDATIONS_TOPIC": f"recommendations-{suffix}",
            "STREAMRANK_DEAD_LETTERS_TOPIC": f"dead-letters-{suffix}",
            "STREAMRANK_CREATE_TOPICS": "false",
            "STREAMRANK_ITEM_BATCH_WINDOW_S": "0.1",
            "STREAMRANK_STATISTICS_BATCH_WINDOW_S": "0.1",
        }
        self.settings = Settings(**{k.removeprefix("STREAMRANK_").lower(): v for k, v in self.env.items()})
        ensure_topics(self.settings)
        self.kafka = producer(self.settings)
        self.workers: list[WorkerProcess] = []

    def start_worker(self, name: str = "w1", **env: str) -> WorkerProcess:
        """Start a worker with a fresh state directory and wait until it is ready."""
        worker = WorkerProcess(
            {**self.env, "STREAMRANK_DATA_DIR": str(self.workdir / f"state-{name}"), **env},
            free_port(),
            self.workdir / f"{name}.log",
        ).start()
        self.workers.append(worker)
        worker.wait_ready(timeout_s=180)
        return worker

    def send(self, topic: str, key: str | None, value: Any) -> None:
        """Produce one message; dicts are sent as JSON, bytes as they are."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.kafka.send(topic, key=None if key is None else key.encode(), value=raw)
        self.kafka.flush()

    def read(self, topic: str, until: Callable[[list[dict]], bool], timeout_s: float = 90.0) -> list[dict]:
        """Read a topic from the start until ``until(messages)`` holds; return messages."""
        reader = consumer(self.settings, topic, consumer_timeout_ms=500)
        messages: list[dict] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for message in reader:
                    messages.append(json.loads(message.value))
                if until(messages):
                    return messages
        finally:
            reader.close()
        raise AssertionError(f"timed out on {topic}; got {len(messages)} messages: {messages[-3:]}")

    def close(self) -> None:
        """Stop the workers (by PID) and close the producer."""
        for worker in self.workers:
            worker.stop()
        self.kafka.close()


def read_table(settings: Settings, table: str) -> dict[str, bytes]:
    """The latest value of every key in a table's changelog (deleted keys left out, and the
    position records, whose keys no id can take: ``stream.pipeline.positions``)."""
    reader = consumer(settings, f"{settings.app_id}-{table}-changelog", consumer_timeout_ms=1000)
    latest: dict[str, bytes | None] = {}
    try:
        for message in reader:
            latest[json.loads(message.key)] = message.value  # Faust's keys of type str are JSON
    finally:
        reader.close()
    return {key: value for key, value in latest.items() if value is not None and not is_internal(key)}
