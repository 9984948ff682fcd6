"""Raw topics: events carry the fetched bytes as they are; sends pass bytes through."""

from __future__ import annotations

import asyncio

import faust
from faust.types import Message

from stream.config import Settings
from stream.pipeline.topics import declare_topics


def test_raw_topics_hand_over_the_fetched_bytes_and_send_bytes_as_they_are() -> None:
    app = faust.App("topics-test", broker="memory://", autodiscover=False)
    topics = declare_topics(app, Settings())
    message = Message("events", 3, 7, 1.0, 0, None, b"user-1", b'{"not": "parsed"}', None)
    event = asyncio.run(topics.events.decode(message))
    assert (event.key, event.value, event.message) == (b"user-1", b'{"not": "parsed"}', message)
    tombstone = Message("events", 3, 8, 1.0, 0, None, None, None, None)
    assert asyncio.run(topics.events.decode(tombstone)).value is None
    assert topics.recommendations.key_serializer == topics.recommendations.value_serializer == "raw"
    assert topics.recommendations.prepare_value(b"\xff\x00", None) == (b"\xff\x00", None)
