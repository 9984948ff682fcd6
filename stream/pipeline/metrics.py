"""Prometheus metrics of a streamrank worker, built in one place on a given registry.

Names follow Prometheus conventions: the ``streamrank_`` namespace, base units
(seconds), ``_total`` on counters, bounded label values only (never user or item ids).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from stream.errors import REASONS

# Event-to-recommendation spans sub-millisecond (rerank of a hot profile) to seconds
# (a backlog after a restart); these buckets keep both ends readable. Quantiles are
# interpolated linearly inside a bucket, so 0.15 and 0.2 split the 0.1-0.25 s span where
# a loaded worker's p95 and p99 fall: without them, the stream benchmark's p95 at 50%
# load read 221 ms where they give 146 ms, from the same counts.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
AGENTS = ("update_user_interest", "embed_new_items", "count_item_popularity", "rerank_requests")
MODES = ("topk", "rerank")
# Outcomes of one request of the worker to the encoder service.
REMOTE_OUTCOMES = ("ok", "error", "timeout", "rejected_open_circuit")
# What the liveness watchdog finds stalled (stream.pipeline.liveness).
STALL_KINDS = ("consumer", "agent")


class Metrics:
    """Every metric a worker exports; pass ``CollectorRegistry()`` in tests."""

    def __init__(
        self,
        registry: CollectorRegistry,
        event_types: list[str],
        source_topics: list[str],
    ) -> None:
        self.registry = registry
        self.events = Counter(
            "streamrank_events",
            "Valid interaction events processed, by type.",
            ["type"],
            registry=registry,
        )
        self.items_encoded = Counter(
            "streamrank_items_encoded",
            "Catalog items encoded into vectors.",
            registry=registry,
        )
        self.items_deleted = Counter("streamrank_items_deleted", "Catalog items retired.", registry=registry)
        self.recommendations = Counter(
            "streamrank_recommendations",
            "Recommendation lists emitted, by mode (topk after events, rerank on request).",
            ["mode"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "streamrank_dead_letters",
            "Messages rejected to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.unencoded_item_events = Counter(
            "streamrank_unencoded_item_events",
            "Events on items without a vector yet; kept pending in the user's profile.",
            registry=registry,
        )
        self.event_to_recommendation = Histogram(
            "streamrank_event_to_recommendation_seconds",
            "From the Kafka timestamp of the newest input message to the list being sent.",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_processing = Histogram(
            "streamrank_batch_processing_seconds",
            "Processing time of one batch taken from a stream, by agent.",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "streamrank_batch_size",
            "Messages per batch taken from a stream, by agent.",
            ["agent"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.encoder_batch_size = Histogram(
            "streamrank_encoder_batch_size",
            "Texts per encoder call, in-process or to the encoder service.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.encoder_batch_duration = Histogram(
            "streamrank_encoder_batch_duration_seconds",
            "Wall time of one encoder call, in-process or to the encoder service.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.users = Gauge(
            "streamrank_users",
            "User profiles held by this worker (its partitions).",
            registry=registry,
        )
        self.items = Gauge(
            "streamrank_items",
            "Active catalog items with a vector of the current model, held for scoring.",
            registry=registry,
        )
        self.remote_requests = Counter(
            "streamrank_encoder_remote_requests",
            "Requests of this worker to the encoder service, by outcome (rejected_open_circuit: "
            "not sent because the circuit breaker is open).",
            ["outcome"],
            registry=registry,
        )
        self.circuit_open = Gauge(
            "streamrank_encoder_circuit_open",
            "1 while the circuit breaker to the encoder service is open (calls fail at once), else 0.",
            registry=registry,
        )
        self.fallbacks = Counter(
            "streamrank_encoder_fallbacks",
            "Items the worker could not get from the encoder service, handled by the fallback "
            "(encoded in-process, or deferred and retried in the background).",
            registry=registry,
        )
        self.reencode_pending = Gauge(
            "streamrank_catalog_reencode_pending",
            "Live catalog items without a vector of the configured model (a model switch or "
            "deferred items), re-encoded in the background.",
            registry=registry,
        )
        self.items_reencoded = Counter(
            "streamrank_items_reencoded",
            "Catalog items re-encoded in the background with the configured model.",
            registry=registry,
        )
        self.model_switches = Counter(
            "streamrank_model_switches",
            "Times scoring moved to the configured model once every live item had its vector.",
            registry=registry,
        )
        self.gc_pause = Histogram(
            "streamrank_gc_pause_seconds",
            "Pauses of the worker process for Python's cyclic garbage collector, by generation "
            "(2: a full collection); the event loop stands still during each.",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS,
            registry=registry,
        )
        # Exactly-once effects (docs/reliability.md): what a replay was recognised to have done.
        self.replayed_events = Counter(
            "streamrank_replayed_events",
            "Events read again after a crash or rebalance and skipped: their effects were stored.",
            ["reason"],
            registry=registry,
        )
        self.replayed_statistics = Counter(
            "streamrank_replayed_statistics_messages",
            "Statistics messages (per table) recognised as merged already, and skipped.",
            registry=registry,
        )
        self.read_your_writes_waits = Counter(
            "streamrank_read_your_writes_waits",
            "Rerank requests that waited for their partition's earlier events to be applied.",
            registry=registry,
        )
        self.read_your_writes_timeouts = Counter(
            "streamrank_read_your_writes_timeouts",
            "Rerank requests answered after the wait for earlier events timed out.",
            registry=registry,
        )
        self.stalls = Counter(
            "streamrank_stalls",
            "Stalls the liveness watchdog found, by kind: agent (taken events not acknowledged for "
            "LIVENESS_AGENT_STALL_S), consumer (an input partition's end ahead of what was fetched, "
            "for LIVENESS_FETCH_STALL_S). /healthz fails while one lasts.",
            ["kind"],
            registry=registry,
        )
        self.agent_crashes = Counter(
            "streamrank_agent_crashes",
            "Agent actors that crashed and were restarted by Faust's supervisor, by agent. /healthz "
            "fails from the first one until the worker restarts.",
            ["agent"],
            registry=registry,
        )
        self.model = Info("streamrank_model", "Encoder model used for item vectors.", registry=registry)
        self.scoring_model = Info(
            "streamrank_scoring_model",
            "Model whose vectors scoring reads; differs from streamrank_model while re-encoding.",
            registry=registry,
        )
        for outcome in REMOTE_OUTCOMES:
            self.remote_requests.labels(outcome)
        # Pre-create known label values so their series exist from 0.
        for event_type in event_types:
            self.events.labels(event_type)
        for mode in MODES:
            self.recommendations.labels(mode)
            self.event_to_recommendation.labels(mode)
        for reason in ("already_applied", "profile_had_applied"):
            self.replayed_events.labels(reason)
        for generation in ("0", "1", "2"):
            self.gc_pause.labels(generation)
        for agent in AGENTS:
            self.batch_processing.labels(agent)
            self.batch_size.labels(agent)
            self.agent_crashes.labels(agent)
        for kind in STALL_KINDS:
            self.stalls.labels(kind)
        for topic in source_topics:
            for reason in REASONS:
                self.dead_letters.labels(topic, reason)
