"""Topics streamrank reads and writes.

Input topics carry raw bytes: decoding happens in ``records`` so that malformed input
reaches the dead-letter topic with its original bytes instead of failing in Faust. Their
events are made without Faust's codecs (``stream.kafka.patches.RawSchema``).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT

from stream.config import Settings
from stream.kafka.patches import RawSchema


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of the pipeline, by role."""

    events: TopicT
    items: TopicT
    rerank_requests: TopicT
    recommendations: TopicT
    dead_letters: TopicT
    # internal: per-batch interaction sums, sent to each item's owner partition
    item_interactions: TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the topics on the app (external ones are created by ``admin``)."""

    def raw(name: str) -> TopicT:
        return app.topic(name, partitions=settings.topic_partitions, schema=RawSchema())

    return Topics(
        events=raw(settings.events_topic),
        items=raw(settings.items_topic),
        rerank_requests=raw(settings.rerank_requests_topic),
        recommendations=raw(settings.recommendations_topic),
        dead_letters=raw(settings.dead_letters_topic),
        item_interactions=app.topic(
            f"{settings.app_id}-item-interactions",
            internal=True,
            partitions=settings.topic_partitions,
            schema=RawSchema(),  # binary messages (statistics.ItemIncrements.to_bytes)
        ),
    )
