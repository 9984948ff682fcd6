"""The encoder service (``streamrank encode-server``): the in-process encoder over HTTP.

- ``POST /embed`` takes ``{"texts": [str, ...], "encoding": "float" | "base64"}`` and answers
  ``{"model": <model id>, "dim": <int>, "vectors": [...]}``: one vector per text, in order;
  float lists, or base64 of little-endian float32 (compact and exact; the worker uses it).
- ``GET /healthz``: 200 with the model id and dimension once the model is loaded, else 503.
- ``GET /metrics``: Prometheus text.

This module validates input, consults the content-hash cache, tokenises on a helper thread
and awaits the :class:`~encoders.batching.BatchQueue`, which batches concurrent requests into
model calls on the model thread. Every failure is a JSON ``{"error", "error_type"}`` with the
status of its :mod:`encoders.errors` class; nothing a client sends can crash the process.
SIGTERM stops listening, lets in-flight requests finish (``shutdown_timeout_s``), then exits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from encoders.batching import BatchQueue
from encoders.config import EncoderSettings
from encoders.errors import (
    BodyTooLarge,
    EncoderError,
    InvalidJson,
    InvalidRequest,
    NotReady,
    TooManyTexts,
)
from encoders.metrics import ServiceMetrics
from encoders.text import TextEncoder

__all__ = ["EmbedRequest", "EncoderService", "parse_embed_request", "run_server", "serve"]

log = logging.getLogger(__name__)

Encoding = Literal["float", "base64"]
State = Literal["loading", "ready", "failed", "stopping"]


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """A validated ``POST /embed`` body."""

    texts: list[str]
    encoding: Encoding


def parse_embed_request(body: bytes, max_texts: int) -> EmbedRequest:
    """Validate a ``POST /embed`` body.

    Raises:
        InvalidJson: If the body is not UTF-8 JSON.
        InvalidRequest: If it is not ``{"texts": [str, ...]}`` (plus an optional
            ``"encoding"``), or a text cannot be encoded as UTF-8.
        TooManyTexts: If it holds more than ``max_texts`` texts.
    """
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJson(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest(f'body must be a JSON object {{"texts": [...]}}, got {type(obj).__name__}')
    unknown = sorted(set(obj) - {"texts", "encoding"})
    if unknown:
        raise InvalidRequest(f"unknown fields {unknown}; accepted: texts, encoding")
    texts = obj.get("texts")
    if not isinstance(texts, list):
        raise InvalidRequest('"texts" must be a list of strings')
    if len(texts) > max_texts:
        raise TooManyTexts(f"{len(texts)} texts in one request; at most {max_texts} (max_texts_per_request)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"texts[{i}] must be a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"texts[{i}] is not valid Unicode (lone surrogate)") from None
    encoding = obj.get("encoding", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest(f'"encoding" must be "float" or "base64", got {encoding!r}')
    return EmbedRequest(texts=texts, encoding=encoding)


def embed_response(model_id: str, vectors: np.ndarray, encoding: Encoding) -> bytes:
    """The JSON body answering ``POST /embed``: ``{"model", "dim", "vectors"}``.

    The base64 form is assembled directly: base64 text needs no JSON escaping, and scanning it
    through ``json.dumps`` took a seventh of the event loop's time under load, time the model
    thread then waited for the GIL.
    """
    head = f'{{"model":{json.dumps(model_id)},"dim":{vectors.shape[1]}'
    if encoding == "float":
        return f'{head},"vectors":{json.dumps(vectors.tolist(), separators=(",", ":"))}}}'.encode()
    if len(vectors) == 0:
        return head.encode() + b',"vectors":[]}'
    rows = b'","'.join(base64.b64encode(row) for row in vectors.astype("<f4", copy=False))
    return head.encode() + b',"vectors":["' + rows + b'"]}'


def _error_response(error: EncoderError) -> web.Response:
    return web.json_response({"error": error.detail, "error_type": error.reason}, status=error.status)


class EncoderService:
    """The HTTP application around one :class:`TextEncoder`, its cache and its batch queue."""

    def __init__(
        self,
        settings: EncoderSettings,
        registry: CollectorRegistry | None = None,
        loader: Callable[[], TextEncoder] | None = None,
    ) -> None:
        """Build the application; the model is loaded by :meth:`load`.

        Args:
            settings: Model, batching and limit settings.
            registry: Registry of the service's metrics (a new one by default).
            loader: Builds the encoder (default: from ``settings``); runs on the model thread.
        """
        self.settings = settings
        self.metrics = ServiceMetrics(registry or CollectorRegistry())
        self._loader = loader or (lambda: TextEncoder.from_settings(settings))
        self.state: State = "loading"
        self.load_error = ""
        self.encoder: TextEncoder | None = None
        self.queue: BatchQueue[list[int]] | None = None
        # One thread runs the model (not re-entrant); another tokenises the next requests
        # meanwhile (the Rust tokenizer releases the GIL).
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")
        self.app = web.Application(client_max_size=settings.max_body_bytes)
        self.app.router.add_post("/embed", self.embed)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/metrics", self.prometheus)

    async def load(self) -> None:
        """Load the model off the event loop and start the batch queue.

        Raises:
            Exception: Whatever loading the model raised (the state is then ``failed``).
        """
        loop = asyncio.get_running_loop()
        try:
            encoder = await loop.run_in_executor(self._model_thread, self._loader)
        except Exception as exc:
            self.state = "failed"
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.encoder = encoder
        self.queue = BatchQueue(
            encoder.encode_ids,
            self._model_thread,
            max_batch_cost=encoder.max_batch_tokens,
            max_wait_s=self.settings.max_wait_ms / 1000.0,
            max_queued=self.settings.max_queue_texts,
            observer=self.metrics,
        )
        self.queue.start()
        self.metrics.model.info(
            {
                "model": encoder.model_name,
                "model_id": encoder.model_id,
                "dim": str(encoder.dim),
                "device": encoder.device,
            }
        )
        self.state = "ready"
        log.info("encoder ready: %s (%s, %s)", encoder.model_id, encoder.device, encoder.dtype)

    async def close(self) -> None:
        """Finish queued work and release the threads."""
        self.state = "stopping"
        if self.queue is not None:
            await self.queue.stop()
        self._tokenizer_thread.shutdown(wait=False, cancel_futures=True)
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 with the model once it is loaded; 503 while loading, failed or stopping."""
        if self.state != "ready" or self.encoder is None:
            body: dict[str, Any] = {"status": self.state}
            if self.load_error:
                body["error"] = self.load_error
            return web.json_response(body, status=503)
        encoder = self.encoder
        return web.json_response(
            {
                "status": "ready",
                "model": encoder.model_name,
                "model_id": encoder.model_id,
                "dim": encoder.dim,
                "device": encoder.device,
                "dtype": encoder.dtype,
                "max_texts_per_request": self.settings.max_texts_per_request,
                "queue_depth": self.queue.depth if self.queue else 0,
            }
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        """Prometheus text exposition of the service's registry."""
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def embed(self, request: web.Request) -> web.Response:
        """``POST /embed``; counts and times every outcome."""
        started = time.perf_counter()
        code = 500
        try:
            response = await self._embed(request)
            code = response.status
            return response
        except EncoderError as exc:
            code = exc.status
            self.metrics.errors.labels(exc.reason).inc()
            return _error_response(exc)
        except Exception:
            log.exception("unexpected error in /embed")
            self.metrics.errors.labels("internal").inc()
            return web.json_response({"error": "internal error", "error_type": "internal"}, status=500)
        finally:
            self.metrics.requests.labels(str(code)).inc()
            self.metrics.request_duration.observe(time.perf_counter() - started)

    async def _embed(self, request: web.Request) -> web.Response:
        if self.state != "ready" or self.encoder is None:
            raise NotReady(f"the encoder is {self.state}")
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"body of {request.content_length} bytes; at most {limit} (max_body_bytes)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"body larger than {limit} bytes (max_body_bytes)") from None
        parsed = parse_embed_request(body, self.settings.max_texts_per_request)
        with self.metrics.in_progress.track_inprogress():
            vectors = await self.encode(parsed.texts)
        self.metrics.texts.inc(len(parsed.texts))
        return web.Response(
            body=embed_response(self.encoder.model_id, vectors, parsed.encoding),
            content_type="application/json",
        )

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in order: cache first, then the batch queue for the rest."""
        encoder, queue = self.encoder, self.queue
        if encoder is None or queue is None:
            raise NotReady(f"the encoder is {self.state}")
        vectors = np.empty((len(texts), encoder.dim), dtype=np.float32)
        if not texts:
            return vectors
        slot_of: dict[str, int] = {}
        slots = [slot_of.setdefault(text, len(slot_of)) for text in texts]
        unique = list(slot_of)
        cache = encoder.cache
        found = cache.get_many(encoder.model_id, unique) if cache is not None else [None] * len(unique)
        missing = [i for i, vector in enumerate(found) if vector is None]
        self.metrics.cache_hits.inc(len(unique) - len(missing))
        rows = np.empty((len(unique), encoder.dim), dtype=np.float32)
        for i, vector in enumerate(found):
            if vector is not None:
                rows[i] = vector
        if missing:
            missing_texts = [unique[i] for i in missing]
            loop = asyncio.get_running_loop()
            ids = await loop.run_in_executor(self._tokenizer_thread, encoder.tokenize, missing_texts)
            fresh = await queue.submit(ids, sum(len(i) for i in ids))
            rows[missing] = fresh
            if cache is not None:
                cache.put_many(encoder.model_id, missing_texts, fresh)
        vectors[:] = rows[slots]
        return vectors


async def serve(settings: EncoderSettings, registry: CollectorRegistry | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (1 if the model failed to load)."""
    service = EncoderService(settings, registry)
    runner = web.AppRunner(
        service.app, handle_signals=False, access_log=None, shutdown_timeout=settings.shutdown_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("encoder service listening on http://%s:%d", settings.host, settings.port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = asyncio.create_task(service.load())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if loading.done() and loading.exception() is not None:
        log.error("could not load the encoder model: %s", service.load_error)
        exit_code = 1
    elif loading.done():
        await stopping
    log.info("stopping: waiting up to %.0fs for in-flight requests", settings.shutdown_timeout_s)
    service.state = "stopping"  # /healthz says 503 so load balancers stop sending work
    await runner.cleanup()  # stop listening, let in-flight requests finish
    stopping.cancel()
    if not loading.done():
        loading.cancel()
    await service.close()
    return exit_code


def run_server(settings: EncoderSettings) -> int:
    """Run :func:`serve` on a new event loop; returns the exit code."""
    return asyncio.run(serve(settings))
