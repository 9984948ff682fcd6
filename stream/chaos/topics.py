"""Reading a scenario's topics back: records, table changelogs, end offsets, quiet.

End offsets come from aiokafka with the embedded broker's correction
(``stream.kafka.embedded.true_end_offsets``: Tansu lists the end of a partition short when
its last record batch holds several records); committed offsets from kafka-python's admin
client (an OffsetFetch: nothing joins the workers' group).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import TopicPartition as KafkaTopicPartition

from stream.config import Settings
from stream.errors import StreamrankError
from stream.kafka.admin import admin_client, client_options, consumer
from stream.kafka.embedded import true_end_offsets
from stream.pipeline.positions import INTERNAL_PREFIX, is_internal


@dataclass(frozen=True, slots=True)
class Record:
    """One record as the broker holds it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic of a table (Faust names it ``<app_id>-<table>-changelog``)."""
    return f"{settings.app_id}-{table}-changelog"


def interactions_topic(settings: Settings) -> str:
    """The internal item-statistics topic."""
    return f"{settings.app_id}-item-interactions"


async def _end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    client = AIOKafkaConsumer(group_id=None, **client_options(settings))
    await client.start()
    try:
        existing = await client.topics()  # also refreshes the metadata of every topic
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in sorted(client.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return {}
        listed = await client.end_offsets(tps)
        ends = await true_end_offsets(client, listed) if settings.is_embedded else dict(listed)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
    finally:
        await client.stop()


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (a topic not created yet: none)."""
    return asyncio.run(_end_offsets(settings, list(topics)))


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """What the workers' consumer group (the app id) has committed, by (topic, partition)."""
    admin = admin_client(settings)
    try:
        offsets = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in offsets.items() if meta.offset >= 0}


def read_records(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[Record]:
    """Every record of ``topic``, in partition then offset order, up to its end offsets."""
    ends = {p: end for (t, p), end in end_offsets(settings, [topic]).items() if t == topic}
    reader = consumer(settings)
    try:
        tps = [KafkaTopicPartition(topic, p) for p in ends]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        out: dict[int, list[Record]] = {p: [] for p in ends}
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                got = {p: len(out[p]) for p in remaining}
                raise StreamrankError(f"reading {topic} timed out: {got} of {ends}")
            for tp, messages in reader.poll(timeout_ms=500, max_records=5000).items():
                for m in messages:
                    if m.offset < ends[tp.partition]:
                        out[tp.partition].append(
                            Record(tp.partition, m.offset, m.key, m.value, int(m.timestamp))
                        )
                if reader.position(tp) >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        return [record for p in sorted(out) for record in out[p]]
    finally:
        reader.close()


def table_key(raw: bytes | None) -> str | None:
    """A table's key as a string (Faust writes ``str`` keys as JSON); None for a marker key."""
    if raw is None or raw.startswith(INTERNAL_PREFIX.encode()):
        return None
    try:
        key = json.loads(raw)
    except ValueError:
        key = raw.decode("utf-8", errors="replace")
    if not isinstance(key, str):
        key = str(key)
    return None if is_internal(key) else key


def read_table(settings: Settings, table: str) -> dict[str, bytes]:
    """The latest value of every key of a table's changelog; deleted keys and internal
    position markers (keys starting with ``"\\x00"``) left out."""
    latest: dict[str, bytes | None] = {}
    for record in read_records(settings, changelog_topic(settings, table)):
        key = table_key(record.key)
        if key is not None:
            latest[key] = record.value
    return {key: value for key, value in latest.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Quiet:
    """How the wait for a quiet pipeline ended."""

    reached: bool
    seconds: float
    lag: int  # events and statistics messages not committed at the end


def wait_quiet(
    settings: Settings,
    *,
    quiet_s: float = 5.0,
    timeout_s: float = 300.0,
    alive: Callable[[], bool] | None = None,
) -> Quiet:
    """Wait until the workers have committed every event and statistics message, and no
    table changelog nor the recommendations topic has grown for ``quiet_s``.

    Args:
        alive: returns False when waiting is pointless (every worker is gone).
    """
    started = time.monotonic()
    inputs = [settings.events_topic, interactions_topic(settings)]
    outputs = [
        settings.recommendations_topic,
        settings.dead_letters_topic,
        *(changelog_topic(settings, t) for t in ("user-profiles", "item-popularity", "item-covisits")),
    ]
    last_outputs: dict[tuple[str, int], int] = {}
    still_since = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout_s:
        if alive is not None and not alive():
            break
        ends = end_offsets(settings, inputs + outputs)
        committed = committed_offsets(settings)
        lag = sum(
            max(0, end - committed.get(tp, 0)) for tp, end in ends.items() if tp[0] in inputs and end > 0
        )
        out_ends = {tp: end for tp, end in ends.items() if tp[0] in outputs}
        if out_ends != last_outputs or lag > 0:
            last_outputs = out_ends
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return Quiet(True, time.monotonic() - started, 0)
        time.sleep(1.0)
    return Quiet(False, time.monotonic() - started, lag)
