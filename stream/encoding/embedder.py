"""How a worker turns item texts into vectors of the configured model.

In-process by default: the model runs on a single-thread executor, never on the event loop.
With ``STREAMRANK_ENCODER_URL`` set, texts go to the encoder service; when it cannot encode,
the ``fallback`` setting decides: ``local`` loads the model in the worker (once, lazily, off
the event loop) and encodes there; ``defer`` returns no vectors, the items are stored without
one and the background re-encoder retries them. Either way the worker keeps running and the
items are counted in ``streamrank_encoder_fallbacks_total``: each once, however many rounds
of the re-encoder find the service still down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from encoders.config import EncoderSettings
from encoders.text import TextEncoder
from stream.encoding.client import RemoteEncoder
from stream.errors import EncoderUnavailable
from stream.pipeline.metrics import Metrics

log = logging.getLogger(__name__)

# The most deferred texts remembered, so that retries are not counted again (a few tens of
# bytes each); past it the memory starts over, and retries may be counted once more.
_MAX_DEFERRED_TRACKED = 1_000_000


class ItemEmbedder:
    """Encodes item texts for one worker: in-process, or remote with a fallback."""

    def __init__(
        self,
        settings: EncoderSettings,
        model_id: str,
        dim: int,
        metrics: Metrics,
        *,
        local: TextEncoder | None = None,
        remote: RemoteEncoder | None = None,
        load_local: Callable[[], TextEncoder] | None = None,
        name: str | None = None,
    ) -> None:
        """Create an embedder.

        Args:
            settings: Encoder settings (``fallback``).
            model_id: Id of the configured model; every vector returned is of this model.
            dim: Its dimension.
            metrics: The worker's metrics.
            local: An already loaded in-process encoder.
            remote: The encoder service's client; None encodes in-process only.
            load_local: Builds the in-process encoder when it is first needed
                (default: from ``settings``).
            name: Model name (default: the local encoder's).
        """
        if local is None and remote is None and load_local is None:
            raise ValueError("ItemEmbedder needs a local encoder, a remote one, or a way to load one")
        if local is not None and local.model_id != model_id:
            raise ValueError(f"local encoder is {local.model_id!r}, expected {model_id!r}")
        self._settings = settings
        self.model_id = model_id
        self.dim = dim
        self.model_name = name or (local.model_name if local is not None else model_id.split(":", 1)[0])
        self._metrics = metrics
        self._local = local
        self._remote = remote
        self._load_local = load_local or (lambda: TextEncoder.from_settings(settings))
        self._loading = asyncio.Lock()
        # Hashes of the texts counted as fallbacks and not encoded since: their retries
        # by the re-encoder are not counted again.
        self._deferred: set[int] = set()
        # One thread: the model is not re-entrant and must never run on the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    @property
    def device(self) -> str:
        """Where vectors come from: ``remote`` (the encoder service), else the local device."""
        if self._remote is not None:
            return "remote"
        return self._local.device if self._local is not None else "cpu"

    @property
    def remote(self) -> RemoteEncoder | None:
        """The encoder service's client, if one is configured."""
        return self._remote

    async def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        """Vectors of ``texts`` (rows in order), or None when they are deferred.

        Raises:
            Exception: Only if the in-process model itself fails while encoding.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._remote is None:
            return await self._encode_locally(texts)
        try:
            started = time.perf_counter()
            vectors = await self._remote.encode(texts)
            # The worker's view of an encoder call, wherever the model runs.
            self._metrics.encoder_batch_duration.observe(time.perf_counter() - started)
            self._metrics.encoder_batch_size.observe(len(texts))
            self._forget_deferred(texts)
            return vectors
        except EncoderUnavailable as exc:
            self._count_fallbacks(texts)
            if self._settings.fallback == "defer":
                log.warning("encoder service unavailable, %d items deferred: %s", len(texts), exc)
                return None
            log.warning("encoder service unavailable, encoding %d items in-process: %s", len(texts), exc)
        try:
            vectors = await self._encode_locally(texts)
        except Exception:
            log.exception("in-process fallback failed; %d items deferred", len(texts))
            return None
        self._forget_deferred(texts)
        return vectors

    def _count_fallbacks(self, texts: Sequence[str]) -> None:
        """Count the items the service could not encode, except retries of items already
        counted and not encoded since (the re-encoder retries deferred items every round)."""
        hashes = [hash(text) for text in texts]
        deferred = self._deferred
        self._metrics.fallbacks.inc(sum(1 for h in hashes if h not in deferred))
        if len(deferred) + len(hashes) > _MAX_DEFERRED_TRACKED:
            deferred.clear()
        deferred.update(hashes)

    def _forget_deferred(self, texts: Sequence[str]) -> None:
        """These texts have vectors now: a later fallback of them is counted again."""
        if self._deferred:
            self._deferred.difference_update(hash(text) for text in texts)

    async def _encode_locally(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        encoder = self._local
        if encoder is None:
            async with self._loading:
                if self._local is None:
                    log.info("loading the in-process encoder (fallback)")
                    self._local = await loop.run_in_executor(self._executor, self._load_local)
                encoder = self._local
        if encoder.model_id != self.model_id:
            raise EncoderUnavailable(
                f"in-process encoder is {encoder.model_id!r}, expected {self.model_id!r}"
            )
        started = time.perf_counter()
        vectors = await loop.run_in_executor(self._executor, encoder.encode, list(texts))
        self._metrics.encoder_batch_duration.observe(time.perf_counter() - started)
        self._metrics.encoder_batch_size.observe(len(texts))
        return vectors

    async def close(self) -> None:
        """Close the service client and release the model thread."""
        if self._remote is not None:
            await self._remote.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
