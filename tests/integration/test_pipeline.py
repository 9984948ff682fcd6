"""Items and events in, recommendation lists out, through a real broker and worker."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.datasets import movielens
from stream.kafka.embedded import true_end_offsets
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]


def pick_catalog(data: Path) -> tuple[list[movielens.Movie], list[movielens.Movie]]:
    """Real MovieLens films of two clearly different genres."""
    movies = movielens.load_movies(data)
    scifi = [m for m in movies if "Sci-Fi" in m.genres and "Romance" not in m.genres][:30]
    romance = [m for m in movies if "Romance" in m.genres and not {"Sci-Fi", "Action"} & set(m.genres)][:30]
    return scifi, romance


def send_catalog(stack: Stack, movies: list[movielens.Movie]) -> None:
    for m in movies:
        stack.send(stack.settings.items_topic, m.movie_id, movielens.item_message(m, []))


def lists_for(messages: list[dict], user: str) -> list[dict]:
    return [m for m in messages if m["user_id"] == user and "request_id" not in m]


def test_genre_fan_gets_the_genre_and_rerank_gets_its_candidates(stack: Stack, movielens_dir: Path) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    send_catalog(stack, scifi + romance)
    worker = stack.start_worker()
    worker.wait_ready(timeout_s=120, min_items=len(scifi) + len(romance))
    # A user who only rates sci-fi; a burst of events yields lists, not one per event.
    for i, m in enumerate(scifi[:5]):
        stack.send(
            stack.settings.events_topic,
            "fan",
            {"user_id": "fan", "item_id": m.movie_id, "type": "click", "ts": 1_000_000 + i},
        )
    out = stack.read(
        stack.settings.recommendations_topic,
        lambda ms: any(m["event_ts"] == 1_000_004 for m in lists_for(ms, "fan")),
    )
    latest = lists_for(out, "fan")[-1]
    assert len(latest["items"]) == 10
    ids = [it["item_id"] for it in latest["items"]]
    scifi_ids = {m.movie_id for m in scifi}
    assert not set(ids) & {m.movie_id for m in scifi[:5]}, "seen items must be filtered"
    assert sum(i in scifi_ids for i in ids) >= 8, f"sci-fi fan got {ids}"
    assert ids[0] in scifi_ids
    assert latest["items"][0]["reason"].startswith("similar:")
    assert latest["model"].startswith("all-MiniLM-L6-v2")
    assert latest["emitted_ts"] > 0

    candidates = [romance[0].movie_id, scifi[10].movie_id, romance[1].movie_id, scifi[11].movie_id, "nope"]
    stack.send(
        stack.settings.rerank_requests_topic,
        "fan",
        {"request_id": "req-1", "user_id": "fan", "candidates": candidates, "k": 5},
    )
    out = stack.read(
        stack.settings.recommendations_topic, lambda ms: any(m.get("request_id") == "req-1" for m in ms)
    )
    reply = next(m for m in out if m.get("request_id") == "req-1")
    got = [it["item_id"] for it in reply["items"]]
    assert sorted(got) == sorted(candidates)
    assert set(got[:2]) == {scifi[10].movie_id, scifi[11].movie_id}


def test_malformed_input_goes_to_dead_letters_and_valid_input_flows(
    stack: Stack, movielens_dir: Path
) -> None:
    scifi, _ = pick_catalog(movielens_dir)
    send_catalog(stack, scifi[:5])
    worker = stack.start_worker()
    worker.wait_ready(timeout_s=120, min_items=5)
    events = stack.settings.events_topic
    bad = [
        (events, b"\xff\xfe not utf-8", "undecodable"),
        (events, b"{broken json", "invalid_json"),
        (events, b'{"user_id": "u1", "type": "view", "ts": 1}', "missing_field"),
        (events, b'{"user_id": "u1", "item_id": "1", "type": "view", "ts": "noon"}', "wrong_type"),
        (events, b'{"user_id": "u1", "item_id": "1", "type": "teleport", "ts": 1}', "unknown_event_type"),
        (stack.settings.items_topic, b'{"item_id": "big", "title": "' + b"x" * 5000 + b'"}', "text_too_long"),
        (stack.settings.rerank_requests_topic, b'{"request_id": "r", "user_id": "u1"}', "missing_field"),
        # The internal statistics topic: written by workers, read by each item's owner.
        (f"{stack.settings.app_id}-item-interactions", b"SII1 truncated", "undecodable"),
    ]
    for topic, raw, _ in bad:
        stack.send(topic, "u1", raw)
    stack.send(events, "u1", {"user_id": "u1", "item_id": scifi[0].movie_id, "type": "view", "ts": 10})
    dead = stack.read(stack.settings.dead_letters_topic, lambda ms: len(ms) >= len(bad))
    assert sorted(d["reason"] for d in dead) == sorted(r for _, _, r in bad)
    undecodable = next(d for d in dead if d["reason"] == "undecodable")
    assert base64.b64decode(undecodable["payload"]) == b"\xff\xfe not utf-8"
    assert undecodable["source_topic"] == events and undecodable["offset"] >= 0
    out = stack.read(stack.settings.recommendations_topic, lambda ms: any(m["user_id"] == "u1" for m in ms))
    assert out[0]["event_ts"] == 10
    samples = worker.metrics()
    assert samples[f'streamrank_dead_letters_total{{reason="undecodable",topic="{events}"}}'] == 1.0
    assert samples['streamrank_events_total{type="view"}'] == 1.0
    assert worker.process.poll() is None, "the worker keeps running"


def test_restarted_worker_recovers_profiles_from_the_changelog(stack: Stack, movielens_dir: Path) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    send_catalog(stack, scifi[:5] + romance[:5])
    worker = stack.start_worker("first", STREAMRANK_STORE="rocksdb://")
    worker.wait_ready(timeout_s=120, min_items=10)
    users = ["alice", "bob", "carol"]
    for n, user in enumerate(users):
        for i, m in enumerate((scifi if n % 2 else romance)[:3]):
            stack.send(
                stack.settings.events_topic,
                user,
                {"user_id": user, "item_id": m.movie_id, "type": "click", "ts": 100 + i},
            )
    stack.read(
        stack.settings.recommendations_topic,
        lambda ms: {m["user_id"] for m in ms if m["event_ts"] == 102} >= set(users),
    )
    before = {u: worker.get_json(f"/users/{u}/profile") for u in users}
    assert all(status == 200 for status, _ in before.values())
    assert worker.stop() == 0
    # A fresh state directory: everything must come back from the changelog.
    restarted = stack.start_worker("second", STREAMRANK_STORE="rocksdb://")
    after = {u: restarted.get_json(f"/users/{u}/profile") for u in users}
    assert after == before
    assert before["alice"][1]["n_events"] == 3


def test_backlog_batches_spanning_partitions_keep_every_event(stack: Stack, movielens_dir: Path) -> None:
    # A backlog is taken in large batches mixing users of every partition: each user's
    # profile must be read and written in its own partition, or events are lost.
    scifi, romance = pick_catalog(movielens_dir)
    send_catalog(stack, scifi + romance)
    users = [f"user-{n}" for n in range(24)]
    for round_ in range(4):
        for n, user in enumerate(users):
            item = (scifi + romance)[(n + 7 * round_) % 60].movie_id
            event = {"user_id": user, "item_id": item, "type": "view", "ts": 2_000_000 + 100 * round_ + n}
            stack.send(stack.settings.events_topic, user, event)
    # Lingering makes a batch's profile writes share produce batches, whatever the timing.
    worker = stack.start_worker(STREAMRANK_PRODUCER_LINGER_MS="50")
    out = stack.read(
        stack.settings.recommendations_topic,
        lambda ms: {m["user_id"] for m in ms if m["profile_events"] == 4} >= set(users),
    )
    assert max(m["profile_events"] for m in out) == 4
    before = {user: worker.get_json(f"/users/{user}/profile") for user in users}
    for user in users:
        status, profile = before[user]
        assert status == 200
        assert profile["n_events"] == 4, user

    # Profiles of a batch reach the changelog in multi-record batches, whose end offsets the
    # embedded broker misreports; a fresh worker must still recover every one of them.
    assert worker.stop() == 0
    changelog = f"{stack.settings.app_id}-user-profiles-changelog"
    listed, true_ends = asyncio.run(changelog_ends(stack, changelog))
    assert sum(true_ends.values()) >= len(users)
    if stack.settings.is_embedded:
        assert listed != true_ends, "the changelog should end in a multi-record batch somewhere"
    restarted = stack.start_worker("second")
    assert {user: restarted.get_json(f"/users/{user}/profile") for user in users} == before


async def changelog_ends(stack: Stack, topic: str) -> tuple[dict, dict]:
    """(end offsets as the broker lists them, corrected end offsets) of every partition."""
    client = AIOKafkaConsumer(bootstrap_servers=stack.settings.bootstrap_servers, group_id=None)
    await client.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(stack.settings.topic_partitions)]
        listed = await client.end_offsets(tps)
        return dict(listed), await true_end_offsets(client, listed)
    finally:
        await client.stop()
