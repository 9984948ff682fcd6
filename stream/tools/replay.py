"""Replay producer: publish a dataset's catalog and events to any Kafka, at a set rate."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer

from stream.config import Settings
from stream.datasets import movielens
from stream.kafka.admin import producer

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    """What a replay sent."""

    items: int = 0
    events: int = 0
    seconds: float = 0.0


class RateLimiter:
    """Spaces calls to at most ``rate`` per second (no limit when rate <= 0)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        """Sleep until the next call is allowed."""
        if not self.interval:
            return
        now = time.monotonic()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.interval


def send_all(
    kafka: KafkaProducer,
    topic: str,
    messages: Iterable[tuple[str, dict[str, Any]]],
    rate: float,
    on_sent: Callable[[str, dict[str, Any]], None] | None,
) -> int:
    """Send ``(key, value)`` messages as JSON at most ``rate`` per second; flush; return the count."""
    limiter = RateLimiter(rate)
    sent = 0
    for key, value in messages:
        limiter.wait()
        kafka.send(topic, key=key.encode("utf-8"), value=json.dumps(value).encode("utf-8"))
        sent += 1
        if on_sent is not None:
            on_sent(key, value)
    kafka.flush()
    return sent


def replay_movielens(
    settings: Settings,
    data_dir: str,
    *,
    rate: float = 0.0,
    max_events: int | None = None,
    send_items: bool = True,
    send_events: bool = True,
    between: Callable[[int], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> ReplayStats:
    """Publish MovieLens items, then ratings in time order as events.

    Args:
        rate: events per second (0: as fast as the producer goes); items are not limited.
        max_events: stop after this many events (the earliest ones).
        between: called with the item count after the catalog is sent and before the
            events (the demo waits there for the catalog to be encoded).
        on_event: called after each event is handed to the producer.
    """
    data = movielens.resolve_data_dir(data_dir, settings.cache_dir)
    stats = ReplayStats()
    started = time.monotonic()
    kafka = producer(settings)
    try:
        if send_items:
            tags = movielens.load_tags(data)
            items = (
                (m.movie_id, movielens.item_message(m, tags.get(m.movie_id, [])))
                for m in movielens.load_movies(data)
            )
            stats.items = send_all(kafka, settings.items_topic, items, 0.0, None)
            log.info("sent %d items to %s", stats.items, settings.items_topic)
        if between is not None:
            between(stats.items)
        if send_events:
            ratings = movielens.load_ratings(data)[:max_events]
            events = ((r.user_id, movielens.event_message(r)) for r in ratings)
            stats.events = send_all(kafka, settings.events_topic, events, rate, on_event)
            log.info("sent %d events to %s", stats.events, settings.events_topic)
    finally:
        kafka.close()
    stats.seconds = time.monotonic() - started
    return stats
