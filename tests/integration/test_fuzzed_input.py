"""Fuzzed input on every input topic, through a real broker and worker: each bad message
lands in dead letters once with its reason, every valid one is processed, and the worker
keeps running."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from stream.chaos.fuzz import FuzzPayload, InputLimits, fuzz_payloads, valid_message
from stream.kafka.admin import consumer
from stream.tools.process import WorkerProcess
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow, pytest.mark.chaos]

SEED = 20261208
BAD_AND_ODD = 300
USERS, EVENTS_PER_USER = 20, 10
VALID_ITEMS, VALID_REQUESTS = 100, 100


def valid_payloads(rng: random.Random, limits: InputLimits) -> list[FuzzPayload]:
    """Plain valid messages: every user's events in time order, items and rerank requests."""
    payloads = []
    for n in range(USERS):
        user = f"user-{n}"
        for i in range(EVENTS_PER_USER):
            event = {"user_id": user, "item_id": f"item-{i}", "type": "view", "ts": 1_000_000 + i}
            payloads.append(FuzzPayload("events", user.encode(), json.dumps(event).encode(), "valid", None))
    for _ in range(VALID_ITEMS):
        key, item = valid_message(rng, limits, "items")
        payloads.append(FuzzPayload("items", key.encode(), json.dumps(item).encode(), "valid", None))
    for _ in range(VALID_REQUESTS):
        key, request = valid_message(rng, limits, "rerank-requests")
        payloads.append(
            FuzzPayload("rerank-requests", key.encode(), json.dumps(request).encode(), "valid", None)
        )
    return payloads


def interleave(rng: random.Random, valid: list[FuzzPayload], fuzzed: list[FuzzPayload]) -> list[FuzzPayload]:
    """Fuzzed payloads at random places among the valid ones, whose order is kept."""
    merged = list(valid)
    for payload in fuzzed:
        merged.insert(rng.randrange(len(merged) + 1), payload)
    return merged


def produce(stack: Stack, payloads: list[FuzzPayload]) -> dict[tuple[str, int, int], FuzzPayload]:
    """Send every payload; what landed where: (topic, partition, offset) -> payload."""
    topics = {
        "events": stack.settings.events_topic,
        "items": stack.settings.items_topic,
        "rerank-requests": stack.settings.rerank_requests_topic,
    }
    futures = [(stack.kafka.send(topics[p.topic], key=p.key, value=p.value), p) for p in payloads]
    stack.kafka.flush()
    placed = {}
    for future, payload in futures:
        meta = future.get(timeout=30)
        placed[(meta.topic, meta.partition, meta.offset)] = payload
    return placed


def read_until(stack: Stack, topic: str, count: int, timeout_s: float) -> list[dict]:
    """The messages of ``topic`` once it holds ``count``, or all it holds at the timeout."""
    reader = consumer(stack.settings, topic, consumer_timeout_ms=500)
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            messages.extend(json.loads(message.value) for message in reader)
    finally:
        reader.close()
    return messages


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def events_processed(worker: WorkerProcess) -> float:
    return sum(v for k, v in worker.metrics().items() if k.startswith("streamrank_events_total{"))


def test_fuzzed_input_is_dead_lettered_and_valid_input_flows(stack: Stack) -> None:
    rng = random.Random(SEED)
    limits = InputLimits.from_settings(stack.settings)
    # Requests answer at once: with the read-your-writes wait, each would wait for events
    # that are dead letters, one at a time (this test is about bad input, not that wait).
    worker = stack.start_worker(STREAMRANK_READ_YOUR_WRITES_TIMEOUT_S="0")
    fuzzed = fuzz_payloads(SEED, BAD_AND_ODD, limits)
    placed = produce(stack, interleave(rng, valid_payloads(rng, limits), fuzzed))
    bad = {where: p for where, p in placed.items() if p.reason is not None}
    odd_valid = Counter(p.topic for p in fuzzed if p.reason is None)

    dead = read_until(stack, stack.settings.dead_letters_topic, len(bad), timeout_s=60)
    got = {(d["source_topic"], d["partition"], d["offset"]): d for d in dead}
    missing = [
        (p.topic, p.kind, p.reason, p.key, (p.value or b"")[:120]) for w, p in bad.items() if w not in got
    ]
    assert not missing, "every bad message is dead-lettered"
    assert len(dead) == len(got) == len(bad), "each once, and no valid one"
    wrong = [
        (p.topic, p.kind, p.reason, got[where]["reason"])
        for where, p in bad.items()
        if got[where]["reason"] != p.reason
    ]
    assert not wrong
    # A megabyte message fits in its dead letter: cut, with its size and digest.
    huge = [d for d in dead if d["reason"] == "message_too_large"]
    assert huge and all(d["payload_truncated"] and d["payload_size"] > 900_000 for d in huge)

    # Every valid event is applied: the plain users' profiles, and the odd ids counted.
    expected_events = USERS * EVENTS_PER_USER + odd_valid["events"]
    wait_for(lambda: events_processed(worker) >= expected_events, 30, "the valid events")
    assert events_processed(worker) == expected_events
    for n in range(USERS):
        status, profile = worker.get_json(f"/users/user-{n}/profile")
        assert status == 200 and profile["n_events"] == EVENTS_PER_USER
    # Every valid request is answered, and every valid item is in the catalog.
    answered = stack.read(
        stack.settings.recommendations_topic,
        lambda ms: sum("request_id" in m for m in ms) >= VALID_REQUESTS + odd_valid["rerank-requests"],
        timeout_s=30,
    )
    assert sum("request_id" in m for m in answered) == VALID_REQUESTS + odd_valid["rerank-requests"]
    odd_upserts = sum(p.topic == "items" and p.reason is None and p.kind != "deletion" for p in fuzzed)
    worker.wait_ready(timeout_s=30, min_items=VALID_ITEMS + odd_upserts)

    samples = worker.metrics()
    assert not any(k.startswith("streamrank_dead_letter_send_failures") for k in samples)
    failed = [
        k
        for k, v in samples.items()
        if k.startswith("streamrank_dead_letters_total") and "processing_failed" in k and v
    ]
    assert not failed, "nothing valid failed"
    assert worker.process.poll() is None, "the worker keeps running"
    # ...and keeps processing.
    stack.send(
        stack.settings.events_topic, "late", {"user_id": "late", "item_id": "i", "type": "view", "ts": 5}
    )
    wait_for(lambda: worker.get_json("/users/late/profile")[0] == 200, 30, "an event after the fuzz")
