"""Guards of stream.kafka.patches: each fails when the upstream code a patch copies or relies on
changes, and says what to re-read. Checked against faust-streaming 0.15.3, aiokafka 0.14.0 and
mode-streaming 0.7.1.

A sha256 guard pins the source of the upstream function a patch copies or overrides: when a
release changes it, re-read the new source, carry the change into the patch (or drop the patch
if upstream now does what it does), and put the new hash here.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import faust
import faust.streams
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message
from mode import Service
from mode.utils.queues import ThrowableQueue

from stream.kafka import embedded, patches


def _sha256(obj: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


def _assert_unchanged(obj: Callable[..., Any], expected: str, what_to_check: str) -> None:
    assert _sha256(obj) == expected, f"{obj.__qualname__} changed upstream: {what_to_check}"


# --- 1. DrainLoopConsumer: Faust's fetch loop --------------------------------------------------


def test_faust_drain_loop_is_the_one_the_patch_copies() -> None:
    _assert_unchanged(
        faust_consumer.Consumer._drain_messages,
        "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
        "merge it into stream.kafka.patches.DrainLoopConsumer._drain_messages, keeping its hooks "
        "(deliver, commit_by_count, new_record_hold, seek_back); check whether Faust still delivers "
        "with wait_first, awaits the commit by count, and delivers stream records during rebalances",
    )


def test_mode_services_still_have_the_stopped_event_the_drain_loop_reads() -> None:
    stopped = Service()._stopped
    assert callable(getattr(stopped, "is_set", None)), (
        "mode's Service._stopped is gone or no longer an event: DrainLoopConsumer._drain_messages "
        "reads it (as Faust's loop did); re-read Faust's loop for what it reads now"
    )


def test_faust_consumer_still_builds_its_thread_in_new_consumer_thread() -> None:
    _assert_unchanged(
        faust_aiokafka.Consumer._new_consumer_thread,
        "0870ec53dea75083995e3565c0f0a25a1c63ecceaeb238e92e2585e3623af5a9",
        "DrainLoopConsumer._new_consumer_thread overrides it to build consumer_thread_class; "
        "check the thread's constructor arguments and whether Faust now has a setting for the class",
    )


# --- 2. ConsumerThread: the fetch wait and the end offsets ----------------------------------------


def test_faust_still_fixes_the_fetch_wait_when_it_creates_the_worker_consumer() -> None:
    _assert_unchanged(
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer,
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7",
        "ConsumerThread._create_worker_consumer overrides it to set the aiokafka consumer's fetch "
        "wait; if Faust now takes fetch_max_wait_ms from a setting, use the setting and drop it",
    )


def test_faust_end_offsets_for_table_recovery_still_come_from_highwaters() -> None:
    _assert_unchanged(
        faust_aiokafka.AIOKafkaConsumerThread._highwaters,
        "a7f4f97d9f32aca2777713e22671d70eae4b3ae51541bb09a90448ce83acefce",
        "ConsumerThread._highwaters overrides it to correct the embedded broker's end offsets; "
        "check that table recovery still reads end offsets through it",
    )
    _assert_unchanged(
        faust_aiokafka.AIOKafkaConsumerThread._ensure_consumer,
        "ff4a4c693b7ec63f4a76dfb61c419380bef70dd32383fe38ebcfcc27091605a6",
        "ConsumerThread._highwaters calls it for the thread's aiokafka consumer",
    )


def test_aiokafka_reads_the_fetch_wait_when_the_consumer_starts() -> None:
    async def main() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=123)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    message = (
        "aiokafka's AIOKafkaConsumer no longer keeps fetch_max_wait_ms in _fetch_max_wait_ms, or no "
        "longer hands it to its Fetcher at start: ConsumerThread._create_worker_consumer sets it there"
    )
    assert asyncio.run(main()) == 123, message
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start), message


def test_the_embedded_transport_builds_consumers_with_its_fetch_wait() -> None:
    async def main() -> tuple[type, int, int]:
        app = faust.App("test-patches-embedded", broker="tansu://127.0.0.1:1", autodiscover=False)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return type(thread), consumer._fetch_max_wait_ms, embedded.EMBEDDED_FETCH_MAX_WAIT_MS
        finally:
            await consumer.stop()

    thread_class, fetch_wait, expected = asyncio.run(main())
    assert issubclass(thread_class, patches.ConsumerThread)
    assert fetch_wait == expected


# --- 3. consumer_client ---------------------------------------------------------------------------


def test_aiokafka_consumers_still_hold_their_client() -> None:
    async def main() -> object:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        try:
            return patches.consumer_client(consumer)
        finally:
            await consumer.stop()

    assert isinstance(asyncio.run(main()), AIOKafkaClient), (
        "aiokafka's AIOKafkaConsumer._client is gone or no longer an AIOKafkaClient: "
        "stream.kafka.embedded.true_end_offsets sends a raw Fetch through it"
    )


# --- 4. Faust's stream iterator, per batch (stream.pipeline.intake) --------------------------------


def test_faust_stream_iterator_is_the_one_intake_copies() -> None:
    _assert_unchanged(
        faust.streams.Stream._py_aiter,
        "3a48ee257a65435b482d51edb74f2993a67867949b1ef89b49fea893769e0614",
        "admit_events and ack_event copy what it does per event (the skip of stale events, "
        "tracking, sensors, acks), and take_available reads its channel's queue; carry changes "
        "over, and check whether Faust can now take what a stream's channel holds",
    )


def test_channels_and_streams_still_have_the_queue_and_counter_intake_uses() -> None:
    app = faust.App("test-patches-intake", broker="kafka://127.0.0.1:1", autodiscover=False)

    async def main() -> tuple[object, object]:
        stream = app.topic("events", value_serializer="raw").stream()
        before = stream.events_total  # type: ignore[attr-defined]
        patches.count_events(stream, 2)
        return patches.channel_queue(stream), stream.events_total - before  # type: ignore[attr-defined]

    queue, counted = asyncio.run(main())
    assert isinstance(queue, ThrowableQueue), "Faust's Channel.queue changed: take_available reads it"
    assert counted == 2, "Faust's Stream.events_total changed: take_available counts into it"


# --- 5. RawSchema ---------------------------------------------------------------------------------


def test_faust_schema_compile_is_the_one_raw_schema_replaces() -> None:
    _assert_unchanged(
        faust.Schema.compile,
        "d46eec5ce3195b2c6752cb860a10946cee66ddf6a955f2ea44ac1568c0ecb9ad",
        "RawSchema.compile replaces the decode function it builds; check the decode function's "
        "signature, how it makes the event, and whether raw topics still pay for codec look-ups",
    )


@pytest.mark.parametrize("value", [b'{"not": "parsed"}', None])
def test_raw_schema_makes_the_event_faust_makes_with_raw_serializers(value: bytes | None) -> None:
    app = faust.App("test-patches-schema", broker="kafka://127.0.0.1:1", autodiscover=False)
    message = Message("events", 3, 7, 1.0, 0, {"h": b"1"}, b"user-1", value, None)
    faust_schema = faust.Schema(key_serializer="raw", value_serializer="raw", allow_empty=True)

    def decoded(schema: faust.Schema) -> tuple[object, ...]:
        event = asyncio.run(schema.compile(app)(message))
        return type(event), event.key, event.value, event.headers, event.message

    assert decoded(patches.RawSchema()) == decoded(faust_schema), (
        "Faust's decode of a raw topic now makes a different event: make RawSchema's match it"
    )


# --- 6. set_current_event -------------------------------------------------------------------------


def test_set_current_event_makes_the_event_current_for_tables_only_in_this_task() -> None:
    assert isinstance(faust.streams._current_event, contextvars.ContextVar), (
        "faust.streams._current_event is gone or no longer a context variable: set_current_event "
        "sets it; re-read faust.streams.current_event and Stream._set_current_event"
    )
    app = faust.App("test-patches-current", broker="kafka://127.0.0.1:1", autodiscover=False)
    table = app.Table("profiles", partitions=4)
    message = Message("events", 3, 7, 1.0, 0, None, b"user-1", b"v", None)
    event = faust.Event(app, b"user-1", b"v", {}, message)

    async def main() -> tuple[object, int | None]:
        patches.set_current_event(event)
        return faust.streams.current_event(), table.partition_for_key("user-1")

    current, partition = asyncio.run(main())
    assert current is event, "faust.streams.current_event() no longer reads what set_current_event sets"
    assert partition == 3, "Faust's tables no longer write to the current event's partition"
    assert faust.streams.current_event() is None, "set in the task's context only"
