"""The encoder service: a real ``streamrank encode-server`` process with the bundled model, and
the application in-process with stand-in encoders for states a real model cannot be held in."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from encoders.config import EncoderSettings
from encoders.service import EncoderService, parse_embed_request
from encoders.text import TextEncoder
from stream.kafka.embedded import free_port
from stream.tools.process import EncodeServerProcess

MAX_TEXTS = 64
MAX_BODY = 64 * 1024
SERVER_MODEL_ID = "all-MiniLM-L6-v2:mean:norm:128"
SERVER_ENV = {
    "STREAMRANK_ENCODER_MODEL": "",
    "STREAMRANK_ENCODER_DEVICE": "cpu",
    "STREAMRANK_ENCODER_MAX_TEXTS_PER_REQUEST": str(MAX_TEXTS),
    "STREAMRANK_ENCODER_MAX_BODY_BYTES": str(MAX_BODY),
    "STREAMRANK_ENCODER_CACHE_SIZE": "1000",
    "STREAMRANK_ENCODER_MAX_WAIT_MS": "5",
    "STREAMRANK_ENCODER_QUANTIZE": "none",
    "STREAMRANK_ENCODER_MAX_SEQ_LENGTH": "128",
}


def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST and return (status, JSON body)."""

    async def go() -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=data, headers=headers or {"Content-Type": "application/json"}) as response,
        ):
            return response.status, await response.json(content_type=None)

    return asyncio.run(go())


def decode(vectors: list[str]) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in vectors])


# --- request validation (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"{broken", "invalid_json", "not UTF-8 JSON"),
        (b"\xff\xfe", "invalid_json", "not UTF-8 JSON"),
        (b"[1, 2]", "invalid_request", "JSON object"),
        (b'{"text": ["a"]}', "invalid_request", "unknown fields"),
        (b'{"texts": "a"}', "invalid_request", "list of strings"),
        (b'{"texts": ["a", 3]}', "invalid_request", r"texts\[1\] must be a string"),
        (b'{"texts": ["\\ud800"]}', "invalid_request", "lone surrogate"),
        (b'{"texts": ["a"], "encoding": "hex"}', "invalid_request", "encoding"),
        (json.dumps({"texts": ["a"] * 5}).encode(), "too_many_texts", "at most 4"),
    ],
)
def test_bad_requests_are_named(body: bytes, reason: str, message: str) -> None:
    from encoders.errors import EncoderError

    with pytest.raises(EncoderError, match=message) as info:
        parse_embed_request(body, max_texts=4)
    assert info.value.reason == reason


def test_good_request() -> None:
    parsed = parse_embed_request(b'{"texts": ["a", "b"], "encoding": "base64"}', max_texts=4)
    assert parsed.texts == ["a", "b"] and parsed.encoding == "base64"
    assert parse_embed_request(b'{"texts": []}', max_texts=4).encoding == "float"


# --- the real service with the bundled model ---------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_path: str) -> Iterator[EncodeServerProcess]:
    """One encode-server process for the module, stopped by PID."""
    process = EncodeServerProcess(SERVER_ENV, free_port(), tmp_path_factory.mktemp("encoder") / "server.log")
    process.start()
    try:
        process.wait_ready(timeout_s=180)
        yield process
    finally:
        process.stop()


@pytest.mark.model
def test_healthz_names_the_model(server: EncodeServerProcess, text_encoder: TextEncoder) -> None:
    status, body = server.get_json("/healthz")
    assert status == 200
    assert body["model_id"] == text_encoder.model_id == "all-MiniLM-L6-v2:mean:norm:128"
    assert body["dim"] == 384 and body["device"] == "cpu"


@pytest.mark.model
def test_embed_matches_the_in_process_encoder(
    server: EncodeServerProcess, text_encoder: TextEncoder, movie_texts: list[str]
) -> None:
    texts = movie_texts[:20]
    status, body = post(server.url + "/embed", {"texts": texts})
    assert status == 200
    assert body["model"] == text_encoder.model_id and body["dim"] == 384
    vectors = np.asarray(body["vectors"], dtype=np.float32)
    np.testing.assert_allclose(vectors, text_encoder.encode(texts), atol=1e-5)
    status, packed = post(server.url + "/embed", {"texts": texts, "encoding": "base64"})
    assert status == 200
    np.testing.assert_array_equal(decode(packed["vectors"]), vectors)  # same bytes, other form


@pytest.mark.model
def test_repeated_texts_come_from_the_cache_unchanged(
    server: EncodeServerProcess, all_movie_texts: list[str]
) -> None:
    texts = all_movie_texts[-7:]  # not used by other tests of this module
    before = server.metrics()
    _, first = post(server.url + "/embed", {"texts": texts, "encoding": "base64"})
    _, second = post(server.url + "/embed", {"texts": texts[::-1] + texts[:1], "encoding": "base64"})
    after = server.metrics()
    assert after["streamrank_encoder_cache_hits_total"] - before["streamrank_encoder_cache_hits_total"] == 7
    expected = decode(first["vectors"])
    np.testing.assert_array_equal(decode(second["vectors"]), np.vstack([expected[::-1], expected[:1]]))


@pytest.mark.model
def test_concurrent_callers_each_get_their_own_vectors_in_order(
    server: EncodeServerProcess, text_encoder: TextEncoder, all_movie_texts: list[str]
) -> None:
    pool = all_movie_texts[1000:1400]
    reference = dict(zip(pool, text_encoder.encode(pool), strict=True))
    rng = np.random.default_rng(7)
    requests = [list(rng.choice(pool, size=int(rng.integers(1, 40)), replace=False)) for _ in range(48)]
    before = server.metrics()

    async def run_all() -> list[tuple[int, Any]]:
        async with aiohttp.ClientSession() as session:

            async def one(texts: list[str]) -> tuple[int, Any]:
                async with session.post(server.url + "/embed", json={"texts": texts}) as response:
                    return response.status, await response.json()

            results: list[tuple[int, Any]] = []
            for start in range(0, len(requests), 16):  # 16 concurrent callers at a time
                results += await asyncio.gather(*(one(r) for r in requests[start : start + 16]))
            return results

    results = asyncio.run(run_all())
    for texts, (status, body) in zip(requests, results, strict=True):
        assert status == 200
        expected = np.stack([reference[t] for t in texts])
        np.testing.assert_allclose(np.asarray(body["vectors"], dtype=np.float32), expected, atol=1e-5)
    after = server.metrics()
    batches = after["streamrank_encoder_batch_size_count"] - before["streamrank_encoder_batch_size_count"]
    assert 0 < batches < len(requests), "concurrent requests share model calls"
    assert after['streamrank_encoder_requests_total{code="200"}'] >= len(requests)


@pytest.mark.model
@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"texts": ["a"] * (MAX_TEXTS + 1)}, 413, "too_many_texts"),
        ({"texts": ["x" * (MAX_BODY + 10)]}, 413, "body_too_large"),
        (b"{not json", 400, "invalid_json"),
        ({"texts": "one string"}, 400, "invalid_request"),
        ({"texts": ["ok", None]}, 400, "invalid_request"),
        ({"inputs": ["a"]}, 400, "invalid_request"),
    ],
)
def test_oversized_and_malformed_requests_get_clear_errors(
    server: EncodeServerProcess, body: Any, status: int, error_type: str
) -> None:
    before = server.metrics()
    got_status, got = post(server.url + "/embed", body)
    assert got_status == status
    assert got["error_type"] == error_type and got["error"]
    after = server.metrics()
    key = f'streamrank_encoder_errors_total{{reason="{error_type}"}}'
    assert after[key] == before[key] + 1
    assert server.get_json("/healthz")[0] == 200, "the service keeps serving"
    assert server.process is not None and server.process.poll() is None


@pytest.mark.model
def test_an_empty_request_gets_no_vectors(server: EncodeServerProcess) -> None:
    expected = {"model": SERVER_MODEL_ID, "dim": 384, "vectors": []}
    assert post(server.url + "/embed", {"texts": []}) == (200, expected)


@pytest.mark.model
def test_metrics_are_exported(server: EncodeServerProcess) -> None:
    samples = server.metrics()
    for name in (
        "streamrank_encoder_queue_depth",
        "streamrank_encoder_batch_size_count",
        "streamrank_encoder_batch_duration_seconds_count",
        "streamrank_encoder_request_duration_seconds_count",
        'streamrank_encoder_requests_total{code="413"}',
        'streamrank_encoder_errors_total{reason="overloaded"}',
        "streamrank_encoder_texts_total",
        "streamrank_encoder_cache_hits_total",
    ):
        assert name in samples, name
    info = [k for k in samples if k.startswith("streamrank_model_info")]
    assert info and f'model_id="{SERVER_MODEL_ID}"' in info[0]


@pytest.mark.model
def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    env = {
        **SERVER_ENV,
        "STREAMRANK_ENCODER_MAX_TEXTS_PER_REQUEST": "256",
        "STREAMRANK_ENCODER_MAX_BODY_BYTES": str(1024 * 1024),
        "STREAMRANK_ENCODER_CACHE_SIZE": "0",
        # A loaded test machine must not turn a slow request into a cancelled one.
        "STREAMRANK_ENCODER_SHUTDOWN_TIMEOUT_S": "300",
    }
    process = EncodeServerProcess(env, free_port(), tmp_path / "server.log").start()
    try:
        process.wait_ready(timeout_s=180)
        # 256 texts truncated to 128 tokens: seconds of model work on a CPU.
        texts = [f"{i} " + "a long description of an item " * 30 for i in range(256)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(post, process.url + "/embed", {"texts": texts, "encoding": "base64"})
            while not process.metrics()["streamrank_encoder_requests_in_progress"]:
                assert not answer.done(), answer.result()
                time.sleep(0.01)
            assert process.process is not None
            os.kill(process.process.pid, signal.SIGTERM)  # the request is read and in the model
            status, body = answer.result(timeout=300)
        assert status == 200
        assert decode(body["vectors"]).shape == (256, 384)
        assert process.process.wait(timeout=60) == 0
    finally:
        process.stop()


# --- the application in-process, with stand-in encoders ----------------------------------------


class StandIn:
    """Enough of TextEncoder for the service: vector ``[len(text), 1]``; can be held or fail."""

    model_id = "stand-in:mean:norm:8"
    model_name = "stand-in"
    dim = 2
    device = "cpu"
    dtype = "float32"
    max_batch_tokens = 100
    cache = None

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail = False

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [[len(t)] for t in texts]

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        self.entered.set()
        self.release.wait(timeout=30)
        if self.fail:
            raise RuntimeError("device lost")
        return np.array([[i[0], 1.0] for i in ids], dtype=np.float32)


def run_app(service: EncoderService, body: Any) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(service.app)) as client:
            try:
                return await body(client)
            finally:
                await service.close()

    return asyncio.run(main())


def test_healthz_is_503_until_the_model_is_loaded() -> None:
    loaded = threading.Event()
    stand_in = StandIn()

    def loader() -> Any:
        loaded.wait(timeout=30)
        return stand_in

    service = EncoderService(EncoderSettings(), loader=loader)

    async def body(client: TestClient) -> None:
        load = asyncio.ensure_future(service.load())
        response = await client.get("/healthz")
        assert response.status == 503 and (await response.json())["status"] == "loading"
        response = await client.post("/embed", json={"texts": ["a"]})
        assert response.status == 503 and (await response.json())["error_type"] == "not_ready"
        loaded.set()
        await load
        response = await client.get("/healthz")
        assert response.status == 200 and (await response.json())["model_id"] == StandIn.model_id

    run_app(service, body)


def test_a_model_that_fails_to_load_is_reported() -> None:
    def loader() -> Any:
        raise OSError("no such model directory")

    service = EncoderService(EncoderSettings(), loader=loader)

    async def body(client: TestClient) -> None:
        with pytest.raises(OSError, match="no such model"):
            await service.load()
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json()) == {"status": "failed", "error": "OSError: no such model directory"}

    run_app(service, body)


def test_a_full_queue_answers_429_and_a_failed_batch_500() -> None:
    stand_in = StandIn()
    settings = EncoderSettings(max_queue_texts=2, max_wait_ms=0, cache_size=0)
    service = EncoderService(settings, loader=lambda: stand_in)

    async def body(client: TestClient) -> None:
        await service.load()
        assert service.queue is not None
        stand_in.release.clear()
        running = asyncio.ensure_future(client.post("/embed", json={"texts": ["a"]}))
        while not stand_in.entered.is_set():  # the model holds the first request
            await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(client.post("/embed", json={"texts": ["bb", "ccc"]}))
        while service.queue.depth < 2:
            await asyncio.sleep(0.01)
        refused = await client.post("/embed", json={"texts": ["dddd"]})
        assert refused.status == 429
        assert (await refused.json())["error_type"] == "overloaded"
        stand_in.release.set()
        assert (await (await running).json())["vectors"] == [[1.0, 1.0]]
        assert (await (await waiting).json())["vectors"] == [[2.0, 1.0], [3.0, 1.0]]

        stand_in.fail = True
        failed = await client.post("/embed", json={"texts": ["e"]})
        assert failed.status == 500 and (await failed.json())["error_type"] == "inference"
        stand_in.fail = False
        ok = await client.post("/embed", json={"texts": ["ff"]})
        assert ok.status == 200 and (await ok.json())["vectors"] == [[2.0, 1.0]]
        registry = service.metrics.registry
        assert registry.get_sample_value("streamrank_encoder_requests_total", {"code": "429"}) == 1
        assert registry.get_sample_value("streamrank_encoder_errors_total", {"reason": "inference"}) == 1
        assert registry.get_sample_value("streamrank_encoder_queue_depth") == 0

    run_app(service, body)
