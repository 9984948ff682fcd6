"""Raw Kafka clients of ``streamrank bench stream``: the load generator and the ceiling.

``offer`` produces events at a fixed rate; ``pass_through`` copies a backlog from one topic to
another with no decoding and no state: what the broker and client allow on this machine.
Imports aiokafka only inside functions: the CLI imports the benchmark to build its parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from stream.config import Settings

# The load generator sends the events due every _OFFER_SLICE_S at once (see offer).
_OFFER_SLICE_S = 0.005


def _aiokafka_options(settings: Settings) -> dict[str, Any]:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from stream.pipeline.app import broker_credentials

    return {
        "bootstrap_servers": settings.bootstrap_servers,
        **credentials_to_aiokafka_auth(broker_credentials(settings)),
    }


async def offer(
    settings: Settings, topic: str, messages: Sequence[tuple[bytes, bytes]], rate: float = 0.0
) -> float:
    """Produce ``messages`` (key, value) at ``rate`` per second (all at once if 0); return the
    seconds until the last one was acknowledged.

    The load generator wakes every 5 ms and sends the events due by then together, without
    linger. An event's Kafka timestamp, where its latency starts, is taken as it is sent,
    so sending in slices adds nothing to latency; it offers events in bursts of at most
    5 ms. Sent one by one (kafka-python, a produce request per event), the generator and
    the broker each took about half a core at 360 events/s, on the two cores the worker
    measured had.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks=1, linger_ms=0, **_aiokafka_options(settings))
    await producer.start()
    try:
        started = time.monotonic()
        deliveries: list[asyncio.Future[Any]] = []
        sent = 0
        while sent < len(messages):
            due = (
                len(messages)
                if rate <= 0
                else min(len(messages), int((time.monotonic() - started) * rate) + 1)
            )
            for key, value in messages[sent:due]:
                deliveries.append(await producer.send(topic, value, key=key))
            sent = max(sent, due)
            if sent < len(messages):
                await asyncio.sleep(_OFFER_SLICE_S)
        await asyncio.gather(*deliveries)
        return time.monotonic() - started
    finally:
        await producer.stop()


async def pass_through(settings: Settings, source: str, sink: str, n: int) -> float:
    """Copy ``n`` records from ``source`` to ``sink`` with raw aiokafka; return the seconds.

    The clock runs from the first fetched batch to the last produce acknowledged. Clients
    are configured as the workers' Faust clients are on this broker profile (fetch wait on
    the embedded broker, acks from all replicas).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from stream.kafka.embedded import EMBEDDED_FETCH_MAX_WAIT_MS

    options = _aiokafka_options(settings)
    fetch_wait = EMBEDDED_FETCH_MAX_WAIT_MS if settings.is_embedded else 500
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait,
        **options,
    )
    producer = AIOKafkaProducer(acks="all", linger_ms=0, **options)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(source, p) for p in range(settings.topic_partitions)])
        copied, started = 0, None
        while copied < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=settings.event_batch_size)
            if not batches:
                continue
            started = started or time.perf_counter()
            deliveries = [
                await producer.send(sink, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            await asyncio.gather(*deliveries)
            copied += len(deliveries)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await producer.stop()
        await consumer.stop()
