"""The events agent: table partitions bound through its own task's current event only; a
failed batch dead-lettered."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import faust
from faust import streams as faust_streams
from faust.types import Message
from prometheus_client import CollectorRegistry

from stream.kafka.patches import set_current_event
from stream.pipeline.agents.context import dead_letter_failed_batch
from stream.pipeline.metrics import Metrics


class _Event:
    """Stands in for a Faust event (weak-referenceable, like the real one)."""


def test_binding_sets_the_current_event_faust_tables_read_in_this_task_only() -> None:
    async def main() -> None:
        batch_event = _Event()
        seen_elsewhere: list[object] = []
        bound = asyncio.Event()

        async def drainer() -> None:  # another task, as the stream's drainer is
            await bound.wait()
            seen_elsewhere.append(faust_streams.current_event())

        other = asyncio.create_task(drainer())
        await asyncio.sleep(0)
        set_current_event(batch_event)  # type: ignore[arg-type]
        bound.set()
        await other
        assert faust_streams.current_event() is batch_event
        assert seen_elsewhere == [None]

    asyncio.run(main())


class _RecordingTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, object]]] = []

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, json.loads(value)))


def test_a_failed_batch_is_dead_lettered_message_by_message_with_the_error() -> None:
    app = faust.App("test-failed-batch", broker="kafka://127.0.0.1:1")
    raw = [b'{"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1.0}', b"\xff\xfe"]
    events = [
        faust.Event(app, b"u1", value, {}, Message("events", 3, 40 + i, 0.0, 0, {}, b"u1", value, None))
        for i, value in enumerate(raw)
    ]
    dead_letters = _RecordingTopic()
    metrics = Metrics(CollectorRegistry(), ["view"], ["events"])
    ctx = SimpleNamespace(topics=SimpleNamespace(dead_letters=dead_letters), metrics=metrics)

    asyncio.run(dead_letter_failed_batch(ctx, events, ValueError("ranking broke")))  # type: ignore[arg-type]

    assert [key for key, _ in dead_letters.sent] == [b"u1", b"u1"]
    first, second = (payload for _, payload in dead_letters.sent)
    assert first["reason"] == second["reason"] == "processing_failed"
    assert first["error"] == "processing_failed: ValueError: ranking broke"
    assert (first["source_topic"], first["partition"], first["offset"]) == ("events", 3, 40)
    assert first["payload"] == raw[0].decode()  # the original bytes, to replay
    assert second["payload_encoding"] == "base64"
    counted = metrics.registry.get_sample_value(
        "streamrank_dead_letters_total", {"topic": "events", "reason": "processing_failed"}
    )
    assert counted == 2
