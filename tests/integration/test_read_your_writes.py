"""Read-your-writes: a rerank request sent right after its user's events is answered
from a profile that holds them (``agents.rerank.wait_for_earlier_events``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_pipeline import pick_catalog, send_catalog
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

TRIALS = 5


def test_a_request_right_after_events_is_answered_with_them(stack: Stack, movielens_dir: Path) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    send_catalog(stack, scifi + romance)
    worker = stack.start_worker()
    worker.wait_ready(timeout_s=120, min_items=len(scifi) + len(romance))
    topics = stack.settings
    for trial in range(TRIALS):
        user = f"fan-{trial}"
        for i, m in enumerate(scifi[:5]):
            event = {"user_id": user, "item_id": m.movie_id, "type": "click", "ts": 1_000_000 + i}
            stack.kafka.send(topics.events_topic, key=user.encode(), value=json.dumps(event).encode())
        candidates = [romance[0].movie_id, scifi[10].movie_id, romance[1].movie_id, scifi[11].movie_id]
        request = {"request_id": f"r{trial}", "user_id": user, "candidates": candidates, "k": 4}
        # No delay: the request follows the events in the same flush.
        stack.kafka.send(topics.rerank_requests_topic, key=user.encode(), value=json.dumps(request).encode())
        stack.kafka.flush()
    out = stack.read(
        topics.recommendations_topic,
        lambda ms: sum("request_id" in m for m in ms) == TRIALS,
    )
    for reply in (m for m in out if "request_id" in m):
        assert reply["profile_events"] == 5, reply
        assert reply["input_offset"] is not None
        assert {it["item_id"] for it in reply["items"][:2]} == {scifi[10].movie_id, scifi[11].movie_id}
        assert reply["items"][0]["reason"] != "trending", reply
    samples = worker.metrics()
    assert samples.get("streamrank_read_your_writes_timeouts_total", 0.0) == 0.0
