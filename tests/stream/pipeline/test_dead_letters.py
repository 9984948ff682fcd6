"""Bad input never stops a partition: decoding dead-letters each malformed message once,
a failing batch is bisected down to the message at fault, and a dead letter always fits."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import faust
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import EventT, Message
from prometheus_client import CollectorRegistry

from stream.config import DEFAULT_EVENT_WEIGHTS, Settings
from stream.core.contracts import InteractionEvent, decode_event
from stream.errors import InvalidMessage
from stream.pipeline.agents.context import decode_batch, process_bisecting, send_dead_letter
from stream.pipeline.metrics import Metrics

T = TypeVar("T")
APP = faust.App("test-dead-letters", broker="kafka://127.0.0.1:1")
PRODUCER_LIMIT = 1_000_000  # aiokafka's default max_request_size, which Faust keeps


class RecordingTopic:
    """Stands in for the dead-letter topic; refuses what the real producer would refuse."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[tuple[bytes | None, dict[str, Any]]] = []
        self.fail = fail

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        if self.fail or len(key or b"") + len(value) > PRODUCER_LIMIT:
            raise MessageSizeTooLargeError("The message is too large")
        self.sent.append((key, json.loads(value)))

    def reasons(self) -> list[str]:
        return [letter["reason"] for _, letter in self.sent]


def pipeline(dead_letters: RecordingTopic, **settings: Any) -> Any:
    """A Pipeline with what dead-lettering reads; run() gives it the running loop."""
    metrics = Metrics(CollectorRegistry(), ["view"], ["events"])
    return SimpleNamespace(
        settings=Settings(**settings), topics=SimpleNamespace(dead_letters=dead_letters), metrics=metrics
    )


def event(value: bytes | None, key: bytes | None = b"u1", offset: int = 0) -> EventT:
    message = Message("events", 1, offset, 0.0, 0, {}, key, value, None)
    return faust.Event(APP, key, value, {}, message)


def valid(user: str, offset: int = 0) -> EventT:
    raw = json.dumps({"user_id": user, "item_id": "i", "type": "view", "ts": 1.0}).encode()
    return event(raw, user.encode(), offset)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def decode(raw: bytes | None) -> InteractionEvent:
    return decode_event(raw, DEFAULT_EVENT_WEIGHTS)


def dead_lettered(ctx: Any, reason: str) -> float:
    sample = ctx.metrics.registry.get_sample_value(
        "streamrank_dead_letters_total", {"topic": "events", "reason": reason}
    )
    return sample or 0.0


# --- decoding ---------------------------------------------------------------------------------


def test_decoding_dead_letters_each_bad_message_once_with_its_own_reason() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters, max_message_bytes=10_000, max_json_depth=8)
    deep = b'{"user_id": "u1", "item_id": "i", "type": "view", "ts": 1, "x": ' + b"[" * 200_000
    batch = [
        valid("u1", 0),
        event(b"x" * 10_001, offset=1),
        event(deep[:9_000], offset=2),
        event(b'{"user_id": "u1", "item_id": "i", "type": "view", "ts": 1e300}', offset=3),
        event(b'{"user_id": "u1", "item_id": "i", "type": "view", "ts": 1}', key=None, offset=4),
        event(b'{"user_id": "u2", "item_id": "i", "type": "view", "ts": 1}', key=b"u1", offset=5),
        valid("u2", 6),
    ]

    good = run(decode_batch(ctx, batch, decode))

    assert [e.message.offset for _, e in good] == [0, 6]
    assert dead_letters.reasons() == [
        "message_too_large",
        "nesting_too_deep",
        "invalid_timestamp",
        "missing_key",
        "key_mismatch",
    ]
    assert [letter["offset"] for _, letter in dead_letters.sent] == [1, 2, 3, 4, 5]
    assert dead_lettered(ctx, "nesting_too_deep") == 1


def test_a_decoder_defect_dead_letters_only_its_message() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters)

    def flaky(raw: bytes | None) -> InteractionEvent:
        if raw is not None and b"u2" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return decode(raw)

    good = run(decode_batch(ctx, [valid("u1", 0), valid("u2", 1), valid("u3", 2)], flaky))

    assert [record.user_id for record, _ in good] == ["u1", "u3"]
    assert dead_letters.reasons() == ["processing_failed"]
    assert "RecursionError" in dead_letters.sent[0][1]["error"]


# --- bisecting --------------------------------------------------------------------------------


def bisect(ctx: Any, batch: list[EventT], fails: Callable[[str], bool]) -> tuple[list[list[str]], list[str]]:
    """Decode and process ``batch``; a run raises when any of its users ``fails``."""
    runs: list[list[str]] = []
    applied: list[str] = []

    async def process(part: list[tuple[InteractionEvent, EventT]]) -> None:
        users = [record.user_id for record, _ in part]
        runs.append(users)
        if any(fails(user) for user in users):
            raise ValueError("ranking broke")
        applied.extend(users)

    async def go() -> None:
        await process_bisecting(ctx, await decode_batch(ctx, batch, decode), process)

    run(go())
    return runs, applied


def test_a_failing_batch_is_bisected_down_to_the_message_at_fault() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters)
    users = [f"u{n}" for n in range(16)]
    batch = [valid(user, offset) for offset, user in enumerate(users)]
    batch.insert(3, event(b"{broken", offset=99))  # malformed: dead-lettered once, by decoding

    runs, applied = bisect(ctx, batch, lambda user: user == "u11")

    assert applied == [user for user in users if user != "u11"]
    assert dead_letters.reasons() == ["invalid_json", "processing_failed"]
    at_fault = dead_letters.sent[1][1]
    assert at_fault["offset"] == 11 and at_fault["error"] == "processing_failed: ValueError: ranking broke"
    assert json.loads(at_fault["payload"])["user_id"] == "u11"  # the original bytes, to replay
    assert len(runs) <= 2 * 4 + 1  # 16 messages: about 2·log2(16) runs


def test_every_failing_message_is_dead_lettered_once_and_a_good_batch_runs_once() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters)
    batch = [valid(f"u{n}", n) for n in range(7)]

    _, applied = bisect(ctx, batch, lambda user: user in {"u0", "u5", "u6"})
    assert applied == ["u1", "u2", "u3", "u4"]
    assert sorted(letter["offset"] for _, letter in dead_letters.sent) == [0, 5, 6]

    runs, applied = bisect(pipeline(RecordingTopic()), batch, lambda user: False)
    assert len(runs) == 1 and len(applied) == 7


def test_cancellation_passes_through_and_is_never_bisected() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters)
    runs: list[int] = []

    async def process(part: list[tuple[InteractionEvent, EventT]]) -> None:
        runs.append(len(part))
        raise asyncio.CancelledError

    async def go() -> None:
        good = await decode_batch(ctx, [valid("u1", 0), valid("u2", 1)], decode)
        await process_bisecting(ctx, good, process)

    with pytest.raises(asyncio.CancelledError):
        run(go())
    assert runs == [2] and not dead_letters.sent


# --- sending dead letters ---------------------------------------------------------------------


def test_a_megabyte_message_is_dead_lettered_within_the_producers_limit() -> None:
    dead_letters = RecordingTopic()
    ctx = pipeline(dead_letters)  # the default limits
    raw = b'{"user_id": "u1", "item_id": "' + b"i" * 1_048_000 + b'", "type": "view", "ts": 1}'

    good = run(decode_batch(ctx, [event(raw, key=b"k" * 5000), valid("u1", 1)], decode))

    assert len(good) == 1
    key, letter = dead_letters.sent[0]
    assert letter["reason"] == "message_too_large" and letter["payload_truncated"]
    assert letter["payload_size"] == len(raw) and letter["payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(letter["payload"].encode()) and len(key or b"") == 1024


def test_a_dead_letter_that_cannot_be_sent_is_logged_and_counted_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = pipeline(RecordingTopic(fail=True))

    run(send_dead_letter(ctx, event(b"{broken"), InvalidMessage("invalid_json", "x")))

    failures = ctx.metrics.registry.get_sample_value(
        "streamrank_dead_letter_send_failures_total", {"topic": "events", "reason": "invalid_json"}
    )
    assert failures == 1
    assert dead_lettered(ctx, "invalid_json") == 0
    assert "could not dead-letter events[1]@0" in caplog.text
