"""What identifies an encoder's vector space, read from the model's files without its weights.

The model id (:func:`format_model_id`) names the model, its pooling, normalisation, truncation
and quantisation: vectors with different ids are never compared. The pooling is the one the
model declares in its sentence-transformers layout (``modules.json``, ``1_Pooling/config.json``).
Imports neither the weights nor anything HTTP; only a hub *name* (not a local directory) makes
reading go through ``huggingface_hub``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, get_args

if TYPE_CHECKING:
    from encoders.config import EncoderSettings

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max"]

POOLINGS: tuple[str, ...] = get_args(Pooling)
# sentence-transformers Pooling config: legacy boolean keys and the mode each one selects.
_LEGACY_POOLING_KEYS: dict[str, str] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# sentence-transformers modules this encoder reproduces; anything else (Dense, ...) would
# change the vectors, so such models are refused rather than silently encoded differently.
_SUPPORTED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """What identifies a vector space without loading the weights."""

    model_id: str
    dim: int
    name: str


def model_signature(settings: EncoderSettings) -> ModelSignature:
    """The model id and dimension that :meth:`TextEncoder.from_settings` would produce.

    Reads only the model's config files (no weights), so a worker that encodes through the
    encoder service knows which vectors it must accept.

    Raises:
        ValueError: If the model declares a pooling this encoder cannot reproduce.
    """
    from transformers import AutoConfig

    source = settings.resolved_model()
    is_local = os.path.isdir(source)
    name = settings.model_name() or default_name(source, is_local)
    pooling = declared_pooling(source, is_local)
    dim = int(AutoConfig.from_pretrained(source).hidden_size)
    model_id = format_model_id(name, pooling, settings.normalize, settings.max_seq_length, settings.quantize)
    return ModelSignature(model_id=model_id, dim=dim, name=name)


def format_model_id(name: str, pooling: str, normalize: bool, max_seq_length: int, quantize: str) -> str:
    """The id of a vector space, e.g. ``all-MiniLM-L6-v2:mean:norm:128`` (``...:int8`` quantised)."""
    norm = "norm" if normalize else "raw"
    suffix = "" if quantize == "none" else f":{quantize}"
    return f"{name}:{pooling}:{norm}:{max_seq_length}{suffix}"


def default_name(source: str, is_local: bool) -> str:
    """A model's name when none is given: its directory's basename, or its hub name."""
    return Path(source).resolve().name if is_local else source


def declared_pooling(source: str, is_local: bool) -> Pooling:
    """Return the pooling the model declares (sentence-transformers layout), else ``"mean"``.

    Reads ``modules.json`` to find the Pooling module's directory and its ``config.json``;
    falls back to ``1_Pooling/config.json``.

    Raises:
        ValueError: If the model declares modules or a pooling this encoder cannot reproduce.
    """
    pooling_dir = "1_Pooling"
    modules_text = _read_model_file(source, "modules.json", is_local)
    if modules_text is not None:
        modules = json.loads(modules_text)
        kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
        unsupported = sorted(set(kinds) - _SUPPORTED_MODULES)
        if unsupported:
            raise ValueError(
                f"model {source!r} declares sentence-transformers modules {unsupported}, "
                "which TextEncoder does not implement (supported: Transformer, Pooling, "
                "Normalize)"
            )
        if "Pooling" in kinds:
            pooling_dir = str(kinds["Pooling"].get("path") or pooling_dir)

    config_text = _read_model_file(source, f"{pooling_dir}/config.json", is_local)
    if config_text is None:
        return "mean"
    config = json.loads(config_text)
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)]
    elif isinstance(mode, str):
        modes = [mode]
    else:
        modes = list(mode)
    if not modes:
        return "mean"
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise ValueError(
            f"model {source!r} declares pooling {modes}; TextEncoder supports exactly one of "
            f"{POOLINGS} (pass pooling= to override)"
        )
    return cast(Pooling, modes[0])


def _read_model_file(source: str, filename: str, is_local: bool) -> str | None:
    """Return a text file of a local model directory or hub repo, or ``None`` if absent."""
    if is_local:
        path = Path(source) / filename
        return path.read_text(encoding="utf-8") if path.is_file() else None

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(source, filename)).read_text(encoding="utf-8")
    except EntryNotFoundError:
        logger.debug("%s has no %s", source, filename)
        return None
