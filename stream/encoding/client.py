"""The worker's client of the encoder service (``streamrank encode-server``).

Each call posts texts to ``POST /embed`` (base64 float32, split to ``max_texts_per_request``)
with a per-request timeout, retries connection errors, timeouts, 429 and 5xx with exponential
backoff and jitter, and refuses vectors of another model than the configured one. A circuit
breaker stops calling a service that keeps failing, so a dead service costs one fast error per
call instead of a timeout per retry. Every failure surfaces as
:class:`~stream.errors.EncoderUnavailable`; what to do then (encode in-process, defer) is the
caller's choice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import aiohttp
import numpy as np

from encoders.config import EncoderSettings
from stream.errors import EncoderModelMismatch, EncoderUnavailable
from stream.pipeline.metrics import Metrics

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Closed, then open after ``failures`` consecutive failures, then half-open after ``reset_s``.

    Half-open lets one trial call through: success closes the circuit, failure opens it again.
    Pure state; the clock is injected.
    """

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures <= 0 or reset_s <= 0:
            raise ValueError(f"failures and reset_s must be > 0, got {failures}, {reset_s}")
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state: BreakerState = "closed"
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half-open`` (reset time passed; a trial may run)."""
        if self._state == "open" and self._clock() >= self._opened_at + self._reset_s:
            return "half-open"
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether calls are being refused (open, or half-open with its trial running)."""
        state = self.state
        return state == "open" or (state == "half-open" and self._trial_running)

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def success(self) -> None:
        """A call succeeded: close the circuit."""
        self._failures = 0
        self._state = "closed"
        self._trial_running = False

    def failure(self) -> None:
        """A call failed: open the circuit after enough of them, or at once after a failed trial."""
        self._failures += 1
        if self._trial_running or self._failures >= self._threshold:
            self._state = "open"
            self._opened_at = self._clock()
        self._trial_running = False


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


class RemoteEncoder:
    """Encodes texts through the encoder service; vectors must be of ``model_id``."""

    def __init__(
        self,
        settings: EncoderSettings,
        model_id: str,
        dim: int,
        metrics: Metrics,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Create a client; the HTTP session is opened on first use, on the running loop.

        Args:
            settings: ``url``, ``timeout_s``, ``retries``, ``backoff_s``, circuit breaker and
                ``max_texts_per_request``.
            model_id: The configured model's id; vectors of any other model are refused.
            dim: The configured model's dimension.
            metrics: The worker's metrics.
            breaker: Circuit breaker (default: from the settings).
        """
        if not settings.url:
            raise ValueError("RemoteEncoder needs STREAMRANK_ENCODER_URL")
        self._url = settings.url.rstrip("/") + "/embed"
        self._settings = settings
        self.model_id = model_id
        self.dim = dim
        self._metrics = metrics
        self._breaker = breaker or CircuitBreaker(settings.circuit_failures, settings.circuit_reset_s)
        self._session: aiohttp.ClientSession | None = None
        metrics.circuit_open.set_function(lambda: float(self._breaker.is_open))

    @property
    def url(self) -> str:
        """The ``/embed`` URL called."""
        return self._url

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, in order.

        Raises:
            EncoderUnavailable: The service could not be used (down, timing out, refusing the
                request, circuit open).
            EncoderModelMismatch: The service serves another model.
        """
        limit = self._settings.max_texts_per_request
        parts = [await self._call(list(texts[i : i + limit])) for i in range(0, len(texts), limit)]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts)

    async def _call(self, texts: list[str]) -> np.ndarray:
        settings = self._settings
        last = "no attempt made"
        for attempt in range(settings.retries + 1):
            if not self._breaker.allow():
                self._metrics.remote_requests.labels("rejected_open_circuit").inc()
                raise EncoderUnavailable(f"circuit open to {self._url} after repeated failures ({last})")
            if attempt:
                # Exponential backoff with jitter, so retrying workers do not arrive in step.
                delay = settings.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2)  # noqa: S311
                await asyncio.sleep(delay)
            try:
                vectors = await self._post(texts)
            except _Retryable as exc:
                self._breaker.failure()
                self._metrics.remote_requests.labels(exc.outcome).inc()
                last = str(exc)
                continue
            except EncoderUnavailable:
                self._breaker.failure()
                self._metrics.remote_requests.labels("error").inc()
                raise
            self._breaker.success()
            self._metrics.remote_requests.labels("ok").inc()
            return vectors
        raise EncoderUnavailable(
            f"encoder service {self._url} failed {settings.retries + 1} times; last: {last}"
        )

    async def _post(self, texts: list[str]) -> np.ndarray:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with self._session.post(
                self._url, json={"texts": texts, "encoding": "base64"}, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise _Retryable("timeout", f"no answer within {self._settings.timeout_s}s") from None
        except aiohttp.ClientError as exc:
            raise _Retryable("error", f"{type(exc).__name__}: {exc}") from None
        if status == 429 or status >= 500:
            raise _Retryable("error", f"HTTP {status}: {raw[:200]!r}")
        if status != 200:
            # The request itself is refused (413, 400): retrying cannot help.
            raise EncoderUnavailable(f"encoder service refused the request: HTTP {status}: {raw[:200]!r}")
        return self._vectors(raw, len(texts))

    def _vectors(self, raw: bytes, expected: int) -> np.ndarray:
        try:
            body: Any = json.loads(raw)
            model, vectors = body["model"], body["vectors"]
            if model != self.model_id:
                raise EncoderModelMismatch(
                    f"encoder service {self._url} serves model {model!r}, but this worker is "
                    f"configured for {self.model_id!r}; its vectors are not used (give both the "
                    "same STREAMRANK_ENCODER_* settings)"
                )
            rows = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in vectors])
        except EncoderModelMismatch:
            raise
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise EncoderUnavailable(f"malformed answer from {self._url}: {exc}") from None
        if rows.shape != (expected, self.dim):
            raise EncoderUnavailable(
                f"{self._url} answered shape {rows.shape}, expected {(expected, self.dim)}"
            )
        return rows.astype(np.float32)
