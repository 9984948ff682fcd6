"""Prometheus metrics of the encoder service, built in one place on a given registry.

Names follow Prometheus conventions: the ``streamrank_`` namespace, base units (seconds),
``_total`` on counters, and bounded label values only (HTTP status codes, the closed set of
error reasons in :data:`encoders.errors.REASONS`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from encoders.errors import REASONS

# One forward batch spans a millisecond (a few short texts on a GPU) to seconds (a full
# CPU batch on a busy machine); requests add queueing on top.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0, 30.0,
)  # fmt: skip
# Texts per batch: one short request up to a GPU's 16k-token budget of short texts.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
# HTTP status codes /embed answers with; pre-created so their series start at 0.
CODES = ("200", "400", "413", "429", "500", "503")


class ServiceMetrics:
    """Every metric the encoder service exports; pass ``CollectorRegistry()`` in tests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queue_depth = Gauge(
            "streamrank_encoder_queue_depth",
            "Texts waiting for the model.",
            registry=registry,
        )
        self.in_progress = Gauge(
            "streamrank_encoder_requests_in_progress",
            "POST /embed requests read and validated, waiting for their vectors.",
            registry=registry,
        )
        self.batch_size = Histogram(
            "streamrank_encoder_batch_size",
            "Texts per batch cut from the queue (one model call of up to max_batch_tokens tokens).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "streamrank_encoder_batch_tokens",
            "Tokens per batch cut from the queue (before padding).",
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "streamrank_encoder_batch_duration_seconds",
            "Wall time of one model call.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_duration = Histogram(
            "streamrank_encoder_request_duration_seconds",
            "Wall time of one POST /embed, from the request to the response, any outcome.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "streamrank_encoder_requests",
            "POST /embed requests answered, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        self.errors = Counter(
            "streamrank_encoder_errors",
            "Failed or dropped /embed requests, by reason.",
            ["reason"],
            registry=registry,
        )
        self.texts = Counter(
            "streamrank_encoder_texts",
            "Texts answered by /embed (cache hits included).",
            registry=registry,
        )
        self.cache_hits = Counter(
            "streamrank_encoder_cache_hits",
            "Texts answered from the content-hash cache without running the model.",
            registry=registry,
        )
        self.model = Info("streamrank_model", "Encoder model used for item vectors.", registry=registry)
        for code in CODES:
            self.requests.labels(code)
        for reason in REASONS:
            self.errors.labels(reason)

    # BatchObserver (encoders.batching) -------------------------------------------------
    def on_queue_depth(self, items: int) -> None:
        """Set the queue depth gauge."""
        self.queue_depth.set(items)

    def on_batch(self, items: int, cost: int, seconds: float) -> None:
        """Record one model call."""
        self.batch_size.observe(items)
        self.batch_tokens.observe(cost)
        self.batch_duration.observe(seconds)

    def on_dropped(self, requests: int) -> None:
        """Count requests whose caller left before the model ran."""
        self.errors.labels("cancelled").inc(requests)
