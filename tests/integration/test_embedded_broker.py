"""The embedded broker's end-offset quirk and its correction, on a real Tansu process."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.config import Settings
from stream.kafka.admin import ensure_topics
from stream.kafka.embedded import true_end_offsets

pytestmark = pytest.mark.kafka


async def _produce_batches_and_read_ends(bootstrap: str, topic: str) -> tuple[dict, dict]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await producer.start()
    await consumer.start()
    try:
        for batch in range(3):  # three multi-record batches on partition 0, none on 1
            sent = [await producer.send(topic, b"%d" % i, partition=0) for i in range(5 + batch)]
            await asyncio.gather(*sent)
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        listed = await consumer.end_offsets(tps)
        return listed, await true_end_offsets(consumer, listed)
    finally:
        await producer.stop()
        await consumer.stop()


def test_end_offsets_are_corrected_for_multi_record_batches(broker: tuple[str, str]) -> None:
    bootstrap, profile = broker
    topic = f"end-offsets-{uuid.uuid4().hex[:8]}"
    ensure_topics(Settings(broker=bootstrap, broker_profile=profile, topic_partitions=2), [topic])
    listed, corrected = asyncio.run(_produce_batches_and_read_ends(bootstrap, topic))
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    assert corrected == {p0: 5 + 6 + 7, p1: 0}
    if profile == "embedded":
        # The quirk itself: the last batch's base offset plus one. If Tansu fixes it, this
        # fails, and the correction (one fetch per partition at recovery) can go.
        assert listed[p0] == 5 + 6 + 1
