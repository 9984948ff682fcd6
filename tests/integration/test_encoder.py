"""Real workers with the encoder service and with a model switch, through a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream.kafka.embedded import free_port
from stream.tools.process import EncodeServerProcess, WorkerProcess
from tests.stack import Stack

from .test_pipeline import lists_for, pick_catalog, send_catalog

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]

MODEL_ID = "all-MiniLM-L6-v2:mean:norm:128"
SHORT_MODEL_ID = "all-MiniLM-L6-v2:mean:norm:64"  # the same weights, another vector space


def wait_health(worker: WorkerProcess, ok: Callable[[dict[str, Any]], bool], timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = worker.get_json("/readyz")
        if status == 200 and ok(body):
            return body
        time.sleep(0.25)
    raise AssertionError(f"worker health never matched; last: {body}")


def click(stack: Stack, user: str, item_id: str, ts: int) -> None:
    stack.send(
        stack.settings.events_topic, user, {"user_id": user, "item_id": item_id, "type": "click", "ts": ts}
    )


def test_the_worker_encodes_through_the_service_and_falls_back_when_it_is_down(
    stack: Stack, movielens_dir: Path, tmp_path: Path
) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    server = EncodeServerProcess(
        {"STREAMRANK_ENCODER_MODEL": "", "STREAMRANK_ENCODER_DEVICE": "cpu"},
        free_port(),
        tmp_path / "encoder.log",
    ).start()
    try:
        server.wait_ready(timeout_s=180)
        send_catalog(stack, scifi[:10])
        worker = stack.start_worker(
            STREAMRANK_ENCODER_URL=server.url,
            STREAMRANK_ENCODER_RETRIES="1",
            STREAMRANK_ENCODER_BACKOFF_S="0.05",
            STREAMRANK_ENCODER_CIRCUIT_FAILURES="2",
            STREAMRANK_ENCODER_FALLBACK="local",
        )
        body = wait_health(worker, lambda b: b["items"] >= 10)
        assert body["model"] == MODEL_ID
        samples = worker.metrics()
        assert samples['streamrank_encoder_remote_requests_total{outcome="ok"}'] >= 1
        assert samples["streamrank_encoder_fallbacks_total"] == 0
        assert 'streamrank_model_info{device="remote",dim="384",model="all-MiniLM-L6-v2",' in str(samples)
        assert server.metrics()["streamrank_encoder_texts_total"] >= 10

        assert server.stop() == 0  # the service goes away
        send_catalog(stack, romance[:10])
        wait_health(worker, lambda b: b["items"] >= 20)  # encoded in-process instead
        samples = worker.metrics()
        assert samples["streamrank_encoder_fallbacks_total"] >= 10
        assert samples['streamrank_encoder_remote_requests_total{outcome="error"}'] >= 1
        # Recommendations keep flowing from the same vector space.
        click(stack, "fan", scifi[0].movie_id, 100)
        out = stack.read(stack.settings.recommendations_topic, lambda ms: bool(lists_for(ms, "fan")))
        assert lists_for(out, "fan")[-1]["model"] == MODEL_ID
        assert worker.process is not None and worker.process.poll() is None
    finally:
        server.stop()


def test_a_model_switch_re_encodes_the_catalog_and_never_mixes_models(
    stack: Stack, movielens_dir: Path
) -> None:
    scifi, romance = pick_catalog(movielens_dir)
    catalog = scifi[:15] + romance[:15]
    send_catalog(stack, catalog)
    first = stack.start_worker("first")
    wait_health(first, lambda b: b["items"] >= len(catalog))
    for i, movie in enumerate(scifi[:3]):
        click(stack, "fan", movie.movie_id, 100 + i)
    stack.read(
        stack.settings.recommendations_topic,
        lambda ms: any(m["event_ts"] == 102 for m in lists_for(ms, "fan")),
    )
    assert first.stop() == 0

    # Same weights, shorter truncation: another model id, so every vector must be redone.
    second = stack.start_worker("second", STREAMRANK_ENCODER_MAX_SEQ_LENGTH="64")
    click(stack, "fan", scifi[3].movie_id, 103)  # scored on whichever model is active then
    body = wait_health(second, lambda b: b["model"] == SHORT_MODEL_ID and b["reencode_pending"] == 0)
    assert body["configured_model"] == SHORT_MODEL_ID and body["items"] == len(catalog)
    click(stack, "fan", scifi[4].movie_id, 104)
    out = stack.read(
        stack.settings.recommendations_topic,
        lambda ms: any(m["event_ts"] == 104 for m in lists_for(ms, "fan")),
    )
    models = [m["model"] for m in lists_for(out, "fan")]
    assert set(models) <= {MODEL_ID, SHORT_MODEL_ID}
    # One user's lists are in order: once a list of the new model is out, no old one follows.
    first_new = models.index(SHORT_MODEL_ID)
    assert models[:first_new] == [MODEL_ID] * first_new and set(models[first_new:]) == {SHORT_MODEL_ID}
    assert models[0] == MODEL_ID
    latest = [it["item_id"] for it in lists_for(out, "fan")[-1]["items"]]
    scifi_ids = {m.movie_id for m in scifi}
    assert sum(i in scifi_ids for i in latest) >= 7, f"the rebuilt profile still likes sci-fi: {latest}"
    samples = second.metrics()
    assert samples["streamrank_model_switches_total"] == 1
    assert samples["streamrank_items_reencoded_total"] == len(catalog)
    assert samples["streamrank_catalog_reencode_pending"] == 0
