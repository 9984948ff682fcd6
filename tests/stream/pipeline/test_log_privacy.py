"""Rejected and failing messages are logged by where they come from and why, never with their
payload, key or user id above DEBUG (the dead-letter topic keeps those, as personal data)."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import Message
from prometheus_client import CollectorRegistry

from stream.config import Settings
from stream.errors import InvalidMessage
from stream.pipeline.agents.context import decode_batch, process_bisecting, send_dead_letter
from stream.pipeline.metrics import Metrics

USER = "user-8a1f-private"
PAYLOAD = json.dumps({"user_id": USER, "item_id": "film-42", "type": "teleport", "ts": 1}).encode()


class _RecordingTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, Any]]] = []

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, json.loads(value)))


def _ctx() -> Any:
    metrics = Metrics(CollectorRegistry(), ["view"], ["events"])
    return SimpleNamespace(
        settings=Settings(), topics=SimpleNamespace(dead_letters=_RecordingTopic()), metrics=metrics
    )


def _event() -> faust.Event:
    app = faust.App("test-log-privacy", broker="kafka://127.0.0.1:1")
    message = Message("events", 3, 41, 0.0, 0, {}, USER.encode(), PAYLOAD, None)
    return faust.Event(app, USER.encode(), PAYLOAD, {}, message)


def _logged(caplog: pytest.LogCaptureFixture, at_least: int) -> str:
    """Every record at ``at_least`` or above, as the handlers would write it (with tracebacks)."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records if r.levelno >= at_least)


def test_a_dead_letter_is_logged_by_topic_partition_offset_and_reason_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = _ctx()
    error = InvalidMessage("unknown_event_type", f"'teleport' is not an event type (user {USER})")
    with caplog.at_level(logging.DEBUG):
        asyncio.run(send_dead_letter(ctx, _event(), error))

    (warning,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == "dead-lettered events[3]@41: unknown_event_type"
    assert USER not in _logged(caplog, logging.INFO) and "teleport" not in _logged(caplog, logging.INFO)
    assert "teleport" in _logged(caplog, logging.DEBUG), "the detail is kept for debugging"
    # The letter itself keeps everything, to be replayed.
    ((key, letter),) = ctx.topics.dead_letters.sent
    assert key == USER.encode() and letter["payload"] == PAYLOAD.decode()


def test_failing_messages_are_logged_without_the_exception_message(caplog: pytest.LogCaptureFixture) -> None:
    ctx = _ctx()
    event = _event()

    def decode(raw: bytes | None) -> Any:
        raise KeyError(USER)  # a defect whose message quotes the input

    async def process(batch: list[Any]) -> None:
        raise ValueError(f"no profile for {USER}")

    async def main() -> None:
        assert await decode_batch(ctx, [event], decode) == []
        await process_bisecting(ctx, [(object(), event), (object(), event)], process)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())

    above_debug = _logged(caplog, logging.INFO)
    assert "decoding events[3]@41 raised KeyError" in above_debug
    assert "processing events[3]@41 raised ValueError" in above_debug
    assert USER not in above_debug
    assert USER in _logged(caplog, logging.DEBUG), "tracebacks with their messages go to DEBUG"
    assert len(ctx.topics.dead_letters.sent) == 3  # the undecodable one, then each half
