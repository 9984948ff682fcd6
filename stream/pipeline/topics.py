"""Topics streamrank reads and writes.

Input topics carry raw bytes: decoding happens in ``records`` so that malformed input
reaches the dead-letter topic with its original bytes instead of failing in Faust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import AppT, EventT, Message, TopicT

from stream.config import Settings


class RawSchema(faust.Schema):
    """Raw keys and values: an event carries the bytes fetched, made without Faust's codecs.

    Faust decodes every fetched message through its serializer registry, looking the
    codec and the event class up in the app's settings each time; on raw topics that
    decodes nothing, yet it was most of the per-message hand-off a profile of the worker
    showed. Sending is Faust's own (raw serializers).
    """

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, **_: Any) -> Any:
        """The decode function of the topic's channel: key and value as fetched."""
        event_class = app.conf.Event

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


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
