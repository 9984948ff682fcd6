"""A librdkafka producer with its default partitioner feeding a real worker.

confluent-kafka (like every librdkafka client) places keys with ``consistent_random``:
CRC32 of the key, not Kafka's murmur2. streamrank does not depend on which one, as long as
one producer partitioner keys both ``events`` and ``rerank-requests``: a user's profile is
read and written in the partition their messages arrive on. The users here are picked so
that CRC32 and murmur2 disagree on their partition: a murmur2 assumption anywhere on the
way would lose or split their events, or leave their requests without a profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from stream.core.profiles import UserProfile
from stream.datasets import movielens
from stream.datasets.movielens import Movie
from stream.kafka.admin import consumer
from stream.kafka.partitioner import crc32_partition, murmur2_partition
from stream.tools.process import WorkerProcess, sample_sum
from tests.stack import Stack

from .statistics import wait_until_stable
from .test_pipeline import pick_catalog

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]


class LibrdkafkaProducer:
    """confluent-kafka's producer with librdkafka's defaults; remembers where each message went."""

    def __init__(self, bootstrap: str) -> None:
        # No "partitioner" setting: librdkafka's default, consistent_random (CRC32).
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": 1})
        self.placed: dict[tuple[str, str], set[int]] = {}
        self.errors: list[str] = []

    def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Produce one JSON message keyed by ``key``."""

        def delivered(err: Any, message: Any) -> None:
            if err is not None:
                self.errors.append(str(err))
                return
            self.placed.setdefault((topic, key), set()).add(message.partition())

        self.producer.produce(
            topic, key=key.encode(), value=json.dumps(value).encode(), on_delivery=delivered
        )
        self.producer.poll(0)

    def flush(self) -> None:
        """Wait until every message is delivered; fail on any delivery error."""
        if self.producer.flush(30) != 0:
            raise KafkaException("messages still undelivered after 30 s")
        assert not self.errors, self.errors


def users_placed_apart(partitions: int, n_users: int) -> list[str]:
    """Users whose partition differs between CRC32 and murmur2, over several partitions."""
    names = [f"user-{n}" for n in range(500)]
    users = [
        u
        for u in names
        if crc32_partition(u.encode(), partitions) != murmur2_partition(u.encode(), partitions)
    ][:n_users]
    assert len({crc32_partition(u.encode(), partitions) for u in users}) > 1
    return users


def profile_records(stack: Stack) -> list[tuple[str, int, bytes | None]]:
    """(user, partition, value) of every record of the profiles' changelog, in order per partition."""
    topic = f"{stack.settings.app_id}-user-profiles-changelog"
    reader = consumer(stack.settings, topic, consumer_timeout_ms=1000)
    try:
        return [(json.loads(m.key), m.partition, m.value) for m in reader]
    finally:
        reader.close()


def wait_lists(stack: Stack, done: Any) -> list[dict]:
    return stack.read(stack.settings.recommendations_topic, done, timeout_s=120)


def send_catalog(stack: Stack, kafka: LibrdkafkaProducer, catalog: list[Movie]) -> None:
    """The items, placed by librdkafka's CRC32 (checked), not murmur2."""
    partitions = stack.settings.topic_partitions
    for movie in catalog:
        kafka.send(stack.settings.items_topic, movie.movie_id, movielens.item_message(movie, []))
    kafka.flush()
    for (topic, key), placed in kafka.placed.items():
        assert placed == {crc32_partition(key.encode(), partitions)}, (topic, key)


def send_events(
    stack: Stack, kafka: LibrdkafkaProducer, users: list[str], scifi: list[Movie], romance: list[Movie]
) -> dict[str, list[str]]:
    """3 or 4 clicks of each user, on one genre (alternating); returns each user's items."""
    settings, partitions = stack.settings, stack.settings.topic_partitions
    sent: dict[str, list[str]] = {}
    for n, user in enumerate(users):
        genre = scifi if n % 2 else romance
        items = [m.movie_id for m in genre[n % 6 : n % 6 + 3 + n % 2]]
        sent[user] = items
        for i, item in enumerate(items):
            event = {"user_id": user, "item_id": item, "type": "click", "ts": 1_000_000 + 10 * n + i}
            kafka.send(settings.events_topic, user, event)
    kafka.flush()
    for user in users:
        assert kafka.placed[(settings.events_topic, user)] == {crc32_partition(user.encode(), partitions)}
    return sent


def check_events_applied_once(stack: Stack, sent: dict[str, list[str]]) -> None:
    """Each user's lists reach all their events, never more; their profile lives in one
    partition, the producer's, and holds each event once."""
    partitions = stack.settings.topic_partitions
    out = wait_lists(
        stack,
        lambda ms: all(
            any(m["user_id"] == u and m["profile_events"] == len(items) for m in ms)
            for u, items in sent.items()
        ),
    )
    for user, items in sent.items():
        assert max(m["profile_events"] for m in out if m["user_id"] == user) == len(items)
    records = profile_records(stack)
    for user, items in sent.items():
        mine = [(partition, value) for key, partition, value in records if key == user]
        assert {partition for partition, _ in mine} == {crc32_partition(user.encode(), partitions)}
        profile = UserProfile.from_bytes(mine[-1][1])
        assert profile.n_events == len(items) and profile.counts == {"click": len(items)}
        assert sorted(item for item, _, _ in profile.history + profile.pending) == sorted(items)


def check_profile_page(worker: WorkerProcess, user: str, items: list[str]) -> None:
    """The user's profile, read back through ``/users/<id>/profile``."""
    status, profile = worker.get_json(f"/users/{user}/profile")
    assert status == 200, (user, profile)
    assert profile["n_events"] == len(items) and profile["counts"] == {"click": len(items)}
    assert sorted(entry[0] for entry in profile["history"] + profile["pending"]) == sorted(items), user
    assert profile["has_interest"]


def check_reranking(
    stack: Stack,
    kafka: LibrdkafkaProducer,
    sent: dict[str, list[str]],
    scifi: list[Movie],
    romance: list[Movie],
) -> None:
    """A rerank request, keyed like the events, is ranked with its user's profile."""
    candidates = [romance[10].movie_id, scifi[10].movie_id, romance[11].movie_id, scifi[11].movie_id]
    for user in sent:
        request = {"request_id": f"req-{user}", "user_id": user, "candidates": candidates, "k": 4}
        kafka.send(stack.settings.rerank_requests_topic, user, request)
    kafka.flush()
    out = wait_lists(stack, lambda ms: {m.get("request_id") for m in ms} >= {f"req-{u}" for u in sent})
    replies = {m["request_id"]: m for m in out if m.get("request_id")}
    for n, (user, items) in enumerate(sent.items()):
        reply = replies[f"req-{user}"]
        assert reply["user_id"] == user
        assert reply["profile_events"] == len(items), "the request found its user's profile"
        top = {item["item_id"] for item in reply["items"][:2]}
        genre = scifi if n % 2 else romance
        assert top == {genre[10].movie_id, genre[11].movie_id}, (user, reply["items"])


def test_one_worker_serves_a_librdkafka_producer_with_its_default_partitioner(
    stack: Stack, movielens_dir: Path
) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    kafka = LibrdkafkaProducer(stack.settings.broker)
    send_catalog(stack, kafka, scifi[:12] + romance[:12])
    worker = stack.start_worker()
    worker.wait_ready(timeout_s=180, min_items=24)
    users = users_placed_apart(stack.settings.topic_partitions, 6)
    sent = send_events(stack, kafka, users, scifi, romance)
    check_events_applied_once(stack, sent)
    for user, items in sent.items():
        check_profile_page(worker, user, items)
    check_reranking(stack, kafka, sent, scifi, romance)


def test_two_workers_serve_a_librdkafka_producer_with_its_default_partitioner(
    stack: Stack, movielens_dir: Path
) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    kafka = LibrdkafkaProducer(stack.settings.broker)
    send_catalog(stack, kafka, scifi[:12] + romance[:12])
    workers = [stack.start_worker("a"), stack.start_worker("b")]
    for worker in workers:
        worker.wait_ready(timeout_s=180, min_items=24)
    wait_until_stable(workers)
    users = users_placed_apart(stack.settings.topic_partitions, 12)
    sent = send_events(stack, kafka, users, scifi, romance)
    check_events_applied_once(stack, sent)
    # Both workers took events: each user's events and requests met their profile on either.
    assert all(sample_sum(w.metrics(), "streamrank_events_total") > 0 for w in workers)
    check_reranking(stack, kafka, sent, scifi, romance)

    # Either worker serves every profile: one it does not hold, it asks the other for.
    missed = [
        (user, worker.web_port)
        for user in sent
        for worker in workers
        if worker.get_json(f"/users/{user}/profile")[0] != 200
    ]
    assert missed == []
    for user, items in sent.items():
        check_profile_page(workers[0], user, items)
