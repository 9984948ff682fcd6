"""streamrank settings: one frozen object, read from ``STREAMRANK_*`` environment variables.

Every knob the workers use lives here with its default and the reason for it; nothing
else in the package reads the environment. ``stream.tools.cli`` builds the object once
(applying command-line flags over the environment) and passes it down. The parameter
classes of ``stream.core`` (``RankingConfig``, ``CovisitParams``, ``ProfileParams``) have
no defaults of their own: their ``from_settings`` builds them from this object. This module
imports nothing from ``stream``, so the core depends on it for type checking only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from encoders.config import EncoderSettings

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "rate": 1.0,
    "like": 3.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
}


def _default_data_dir() -> str:
    # The repository sits beside ``shared/`` in development checkouts.
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-latest-small"
    return str(candidate) if candidate.is_dir() else ""


class Settings(BaseSettings):
    """Configuration of a streamrank worker, replay producer and demo."""

    model_config = SettingsConfigDict(env_prefix="STREAMRANK_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------
    broker: str = Field(
        "",
        description="Kafka bootstrap servers, e.g. 'kafka-1:9092,kafka-2:9092'. "
        "Required by `worker`; `demo` starts an embedded broker when empty.",
    )
    broker_profile: Literal["kafka", "embedded"] = Field(
        "kafka",
        description="'kafka' for Apache Kafka (production). 'embedded' applies the "
        "workarounds the embedded Tansu broker needs (short group session timeout, short "
        "fetch wait, end offsets read from a fetch).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*."
    )
    sasl_username: str = Field("", description="SASL user name.")
    sasl_password: str = Field("", description="SASL password (mount it from a secret).")
    ssl_cafile: str = Field("", description="CA bundle for SSL/SASL_SSL; empty: system CAs.")
    app_id: str = Field(
        "streamrank",
        description="Consumer group and prefix of internal topics (changelogs, repartition).",
    )
    topic_partitions: int = Field(
        4,
        gt=0,
        description="Partitions of every streamrank topic. events and rerank-requests must "
        "be co-partitioned (same count, keyed by user_id); this is the unit of scale-out, so "
        "set it to the most workers you will run (the deployment files set 8). More than "
        "that costs: every worker fetches every partition of the global tables' changelogs, "
        "and each events batch sends one statistics message per owner partition.",
    )
    topic_replication: int = Field(1, gt=0, description="Replication factor of created topics.")
    create_topics: bool = Field(True, description="Create missing topics at start (admin rights needed).")
    events_topic: str = Field("events", description="Interaction events, keyed by user_id.")
    items_topic: str = Field("items", description="Catalog adds/updates/deletes, keyed by item_id.")
    rerank_requests_topic: str = Field("rerank-requests", description="Rerank requests, keyed by user_id.")
    recommendations_topic: str = Field("recommendations", description="Ranked lists out, keyed by user_id.")
    dead_letters_topic: str = Field(
        "dead-letters", description="Rejected input with reason and original bytes."
    )
    # What input the decoders take, and what a dead letter may hold (stream.core.contracts).
    max_message_bytes: int = Field(
        524288,
        gt=0,
        description="Largest input message value accepted, in bytes; larger goes to dead letters "
        "(message_too_large) before any parsing. Valid messages are far smaller at the default "
        "limits (an event ~100 bytes, an item at most max_text_chars characters).",
    )
    max_json_depth: int = Field(
        64,
        ge=2,
        le=256,
        description="Deepest nesting of JSON arrays and objects accepted in an input message; "
        "deeper goes to dead letters (nesting_too_deep) before any parsing. The contracts need "
        "2 (a rerank request's candidates); the parsers recurse, so it stays far below "
        "Python's recursion limit.",
    )
    dead_letter_max_bytes: int = Field(
        900000,
        ge=16384,
        le=999000,
        description="Largest dead letter, key and value, in bytes: a rejected value that would "
        "not fit is cut to its first bytes (its size and SHA-256 are kept). Must stay below the "
        "producer's 1,000,000-byte request limit and the broker's message.max.bytes. At the "
        "defaults, a value within max_message_bytes is kept whole, as text or base64, unless "
        "JSON escapes (control characters) make it larger than this.",
    )

    # --- Worker process ----------------------------------------------------------------
    store: str = Field(
        "rocksdb://",
        description="Faust table store for user profiles: 'rocksdb://' (production) or "
        "'memory://'. The catalog tables always live in memory, rebuilt from changelog.",
    )
    data_dir: str = Field("streamrank-data", description="Directory for RocksDB state.")
    web_host: str = Field("0.0.0.0", description="Bind address of the worker's HTTP server.")  # noqa: S104
    web_port: int = Field(
        6066,
        gt=0,
        description="Port of the worker's HTTP server (/metrics, /healthz, /readyz, /users/<id>/profile). "
        "Unique per process on one host.",
    )
    log_level: str = Field("info", description="Worker log level.")
    # Liveness (stream.pipeline.liveness): what fails /healthz, so that the pod is restarted.
    liveness_check_interval_s: float = Field(
        5.0, gt=0, description="How often the liveness watchdog samples the consumer and the agents."
    )
    liveness_agent_stall_s: float = Field(
        120.0,
        gt=0,
        description="An agent that holds events it took but has not acknowledged, and acknowledges "
        "none for this long, is stalled: /healthz answers 503. Above the longest batch expected "
        "(an in-process encoder fallback loading its model, a statistics window's writes).",
    )
    liveness_fetch_stall_s: float = Field(
        120.0,
        gt=0,
        description="The consumer is stalled (/healthz 503) when, for this long, the broker's end of "
        "an assigned input partition stays ahead of what the consumer has fetched, with no fetch "
        "and no acknowledgement on it. Not counted during rebalances and table recovery.",
    )
    stop_deadline_s: float = Field(
        50.0,
        gt=0,
        description="Longest a worker takes to stop after SIGTERM/SIGINT: past it, the process exits "
        "at once with status 70, even if Faust still waits for an agent to acknowledge its "
        "events. Keep it below the orchestrator's grace period (60 s in k8s/ and compose).",
    )

    # --- Input validation --------------------------------------------------------------
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Weight of each accepted event type (JSON object in the environment). "
        "Types not listed are rejected to the dead-letter topic.",
    )
    max_text_chars: int = Field(
        4000, gt=0, description="Longest accepted item title+text; longer goes to dead letters."
    )
    max_candidates: int = Field(1000, gt=0, description="Most candidates accepted in one rerank request.")
    read_your_writes_timeout_s: float = Field(
        1.0,
        ge=0,
        description="Longest a rerank request waits for the events its user produced before it "
        "(those of its partition up to the events topic's end when the request was read); "
        "0: no wait.",
    )

    # --- Profiles and item statistics -----------------------------------------------------
    interest_half_life_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="Half-life of a user's interest vector, in event-time seconds.",
    )
    history_size: int = Field(200, gt=0, description="Recent items kept per user (seen-filter and reasons).")
    pending_size: int = Field(
        64,
        gt=0,
        description="Events on items not yet encoded kept per user, folded into the "
        "interest vector once the item's vector arrives.",
    )
    popularity_half_life_s: float = Field(
        90 * 86400.0,
        gt=0,
        description="Half-life of item popularity, in event-time seconds (tuned for the hybrid on "
        "MovieLens: 90 days beat 30, 60, 180 and 365).",
    )

    covisit_window: int = Field(
        20,
        gt=0,
        description="A user's previous items paired with each new interaction for co-visitation "
        "(tuned on MovieLens: 20 beat 10).",
    )
    covisit_window_s: float = Field(
        86400.0, gt=0, description="Longest gap, in event-time seconds, between two co-visited events."
    )
    covisit_backward_weight: float = Field(
        1.0,
        ge=0.0,
        description="Weight of the pair new item -> previous item relative to previous -> new "
        "(0: co-visitation only predicts what comes next).",
    )
    covisit_half_life_s: float = Field(
        1095 * 86400.0,
        gt=0,
        description="Half-life of co-visitation counts, in event-time seconds. Long: which items "
        "go together changes slowly (tuned on MovieLens: 3 years beat 6 and 12 months).",
    )
    covisit_max_neighbours: int = Field(
        100,
        gt=0,
        description="Co-visited neighbours kept per item: bounds memory to items x this.",
    )

    # --- Ranking -----------------------------------------------------------------------
    top_k: int = Field(10, gt=0, description="Length of emitted lists (requests may ask less).")
    # Weights tuned by prequential evaluation on an earlier time split of MovieLens
    # (`streamrank eval movielens`); co-visitation carries most of the signal there.
    weight_interest: float = Field(0.3, description="Weight of cosine(user interest vector, item).")
    weight_history: float = Field(0.6, description="Weight of max cosine(recent history items, item).")
    weight_popularity: float = Field(0.3, description="Weight of normalised log popularity.")
    weight_freshness: float = Field(
        0.0,
        description="Weight of item freshness. Off by default: it lowered HR@10 on MovieLens "
        "(0.05 cost 0.002); raise it where newness matters (news, launches).",
    )
    weight_covisit: float = Field(
        1.0, description="Weight of co-visitation with the user's recent items (collaborative signal)."
    )
    weight_era: float = Field(
        0.2,
        description="Weight of era proximity: mean over the last HISTORY_SIMILARITY_ITEMS items of "
        "exp(-|item ts - their ts| / ERA_SCALE_S). Items are often taken in runs from one period.",
    )
    era_scale_s: float = Field(
        10 * 365.25 * 86400.0,
        gt=0,
        description="Distance between item times (`ts`) at which era proximity falls to 1/e "
        "(10 years suits films; use days for news).",
    )
    covisit_history_items: int = Field(
        10, gt=0, description="Most recent items whose co-visitation rows score the candidates."
    )
    history_similarity_items: int = Field(
        10, gt=0, description="Most recent history items compared with each candidate."
    )
    freshness_half_life_s: float = Field(
        365 * 86400.0, gt=0, description="Half-life of item freshness since its `ts`."
    )
    mmr_lambda: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="MMR trade-off: 1 = pure relevance (no diversity), lower = more diverse.",
    )
    mmr_pool: int = Field(100, gt=0, description="Top candidates re-selected by MMR when mmr_lambda < 1.")

    similarity_cache_mb: int = Field(
        64,
        ge=0,
        description="Memory for cached similarity rows (one recent item against the whole "
        "catalog), reused across users and batches since popular items recur in many "
        "histories. Rows hold 4 bytes per catalog item; 0 disables the cache.",
    )
    similarity_precision: Literal["int8", "float32"] = Field(
        "int8",
        description="Arithmetic of the similarity rows (recent items and interest against every "
        "catalog item): 'int8' holds the catalog as int8 for fbgemm's kernels, two to four "
        "times faster than float32 on a CPU and within 0.005 of its cosine (float32 where torch "
        "lacks its quantized kernels); 'float32' is exact. With SIMILARITY_CACHE_MB 0 rankings "
        "compute their own float32 products.",
    )
    ranking_threads: int = Field(
        1,
        ge=0,
        description="Threads of the worker's ranking products (numpy's BLAS, torch's int8 kernels "
        "on the event loop's thread). A batch's products are small; more threads gain them "
        "little and take CPU from the Kafka consumer thread (see the stream benchmark). 0 "
        "leaves the libraries' defaults.",
    )

    # --- Batching ----------------------------------------------------------------------
    producer_linger_ms: float = Field(
        0.0,
        ge=0,
        description="How long a produce batch waits for more records. 0 sends at once (lowest "
        "latency); a few ms gives fewer, larger produce requests under load.",
    )
    producer_batch_bytes: int = Field(
        262144,
        gt=0,
        description="Largest produce batch per partition, in bytes. Table changelogs carry "
        "rows of a few KB; batches of 16 KB (Kafka's default) would need a round trip "
        "every few rows.",
    )
    event_batch_size: int = Field(
        500,
        gt=0,
        description="Most events taken from the stream at once. Larger batches amortise "
        "scoring; a user's events within one batch yield one list (coalescing).",
    )
    event_batch_linger_s: float = Field(
        0.0,
        ge=0,
        description="After the first event of a batch, how long to wait for more. 0 takes the "
        "events waiting at once: batches (and the coalescing of a user's events) then grow "
        "with the load, and an idle worker answers an event without delay.",
    )
    statistics_batch_size: int = Field(
        20000,
        gt=0,
        description="Most internal item-statistics messages merged at once by an item's owner.",
    )
    statistics_batch_window_s: float = Field(
        5.0,
        gt=0,
        description="Window over which popularity and co-visitation increments are merged "
        "before being written: each item's entry is written (and replayed by every worker) "
        "at most once per window, so these signals reach rankings up to this late.",
    )
    item_batch_size: int = Field(256, gt=0, description="Most catalog messages encoded in one model call.")
    item_batch_window_s: float = Field(
        0.2, gt=0, description="Longest wait to fill an item batch before encoding it."
    )

    # --- Model versions ----------------------------------------------------------------
    reencode_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often a worker looks for live catalog items without a vector of the "
        "configured model (after a model switch, or deferred while the encoder service was "
        "down) and re-encodes those of its partitions, item_batch_size at a time. Scoring "
        "moves to the new model once every item has its vector.",
    )

    # --- Demo and replay ---------------------------------------------------------------
    data: str = Field(
        default_factory=_default_data_dir,
        description="MovieLens ml-latest-small directory. Empty: download to the cache.",
    )
    cache_dir: str = Field(str(Path.home() / ".cache" / "streamrank"), description="Download cache.")

    encoder: EncoderSettings = Field(default_factory=EncoderSettings)

    @field_validator("event_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        """Broker addresses without any URL scheme."""
        return [s.strip().removeprefix("kafka://") for s in self.broker.split(",") if s.strip()]

    @property
    def is_embedded(self) -> bool:
        """Whether the embedded-broker workarounds are on."""
        return self.broker_profile == "embedded"

    def all_topics(self) -> list[str]:
        """Every external topic streamrank reads or writes."""
        return [
            self.events_topic,
            self.items_topic,
            self.rerank_requests_topic,
            self.recommendations_topic,
            self.dead_letters_topic,
        ]
