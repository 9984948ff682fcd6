"""In-process text encoder: item text in, fixed-size float32 vectors out.

This module turns item text (e.g. ``"Title. Genres: a, b"``) into dense vectors with a
BERT-family model loaded through ``transformers`` (``AutoTokenizer`` / ``AutoModel``), pooled the
way the model declares it (sentence-transformers ``modules.json`` / ``1_Pooling/config.json``).
It is a plain, synchronous library: it imports nothing HTTP (no client, no server) and nothing
Kafka, and uses no asyncio; only a hub *name* (not a local directory) makes loading go through
``huggingface_hub``, as ``transformers`` itself does. Callers on an event loop run
:meth:`TextEncoder.encode` in a single-thread executor.

Vectors are tagged with :attr:`TextEncoder.model_id` so that vectors from different models (or
different pooling / normalisation / truncation settings) are never mixed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import torch

if TYPE_CHECKING:
    from encoders.config import EncoderSettings

__all__ = ["Device", "Dtype", "Pooling", "TextEncoder"]

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max"]
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "float16", "bfloat16"]

_POOLINGS: tuple[str, ...] = get_args(Pooling)
_DEVICES: tuple[str, ...] = get_args(Device)
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
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


class TextEncoder:
    """Encode texts into float32 vectors with a Hugging Face encoder model.

    Texts are tokenised, sorted by token length (longest first) and grouped into batches whose
    padded size (longest length x number of texts) stays within ``max_batch_tokens``; results
    are returned in input order.

    Not safe for concurrent calls from several threads; use one thread (e.g. a single-thread
    executor) per instance.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: Device = "auto",
        dtype: Dtype = "auto",
        max_seq_length: int = 128,
        max_batch_tokens: int = 8192,
        normalize: bool = True,
        threads: int = 0,
        pooling: Pooling | None = None,
        name: str | None = None,
    ) -> None:
        """Load the tokenizer and model.

        Args:
            model: Local model directory or Hugging Face hub name. Hub names are resolved by
                ``transformers`` as usual (cache, ``HF_HUB_OFFLINE`` etc. are honoured).
            device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available, else CPU).
            dtype: Weight precision; ``"auto"`` is float16 on CUDA and float32 on CPU.
            max_seq_length: Tokens kept per text (special tokens included); longer texts are
                truncated.
            max_batch_tokens: Token budget of one forward pass (padded length x texts). A text
                longer than the budget is still encoded, alone in its batch.
            normalize: L2-normalise the vectors (cosine similarity = dot product).
            threads: CPU threads for torch (process-wide ``torch.set_num_threads``); 0 keeps
                torch's default. Ignored on CUDA.
            pooling: Force a pooling mode; ``None`` uses the one the model declares
                (mean when it declares none).
            name: Name used in :attr:`model_name` / :attr:`model_id`; defaults to the model
                directory's basename, or the hub name.

        Raises:
            TypeError: If an integer option is not an int.
            ValueError: On invalid options, an unavailable CUDA device, a max_seq_length the
                model cannot handle, or a model whose declared modules / pooling this encoder
                cannot reproduce.
        """
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
        if dtype != "auto" and dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'auto' or one of {tuple(_DTYPES)}, got {dtype!r}")
        if pooling is not None and pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS} or None, got {pooling!r}")
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int):
            raise TypeError(f"max_seq_length must be an int, got {max_seq_length!r}")
        if max_seq_length <= 0:
            raise ValueError(f"max_seq_length must be > 0, got {max_seq_length}")
        if isinstance(max_batch_tokens, bool) or not isinstance(max_batch_tokens, int):
            raise TypeError(f"max_batch_tokens must be an int, got {max_batch_tokens!r}")
        if max_batch_tokens <= 0:
            raise ValueError(f"max_batch_tokens must be > 0, got {max_batch_tokens}")
        if isinstance(threads, bool) or not isinstance(threads, int):
            raise TypeError(f"threads must be an int, got {threads!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")

        source = os.fspath(model)
        if not source:
            raise ValueError("model must be a model directory or hub name, got ''")
        is_local = os.path.isdir(source)

        resolved_device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.float16 if resolved_device == "cuda" else torch.float32
        else:
            torch_dtype = _DTYPES[dtype]

        self._source = source
        self._device = torch.device(resolved_device)
        self._max_seq_length = max_seq_length
        self._max_batch_tokens = max_batch_tokens
        self._normalize = normalize
        self._pin = self._device.type == "cuda"
        if name:
            self._name = name
        else:
            self._name = Path(source).resolve().name if is_local else source

        # Pooling is resolved before the (larger) weights are loaded, to fail fast.
        self._pooling: Pooling = pooling or _declared_pooling(source, is_local)

        if self._device.type == "cpu" and threads > 0:
            torch.set_num_threads(threads)

        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(source)
        self._model = AutoModel.from_pretrained(source, dtype=torch_dtype)
        self._model.to(self._device)
        self._model.eval()

        limit = getattr(self._model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_seq_length > limit:
            raise ValueError(
                f"max_seq_length={max_seq_length} exceeds the model's max_position_embeddings={limit}"
            )
        pad_id = self._tokenizer.pad_token_id
        self._pad_id = int(pad_id) if pad_id is not None else 0
        self._dim = int(self._model.config.hidden_size)

    @classmethod
    def from_settings(cls, settings: EncoderSettings) -> TextEncoder:
        """Build an encoder from :class:`encoders.config.EncoderSettings`.

        Args:
            settings: Encoder settings; an empty ``model`` selects the bundled
                all-MiniLM-L6-v2.

        Returns:
            The loaded encoder.
        """
        return cls(
            settings.resolved_model(),
            device=settings.device,
            dtype=settings.dtype,
            max_seq_length=settings.max_seq_length,
            max_batch_tokens=settings.max_batch_tokens,
            normalize=settings.normalize,
            threads=settings.threads,
            name=None if settings.model else "all-MiniLM-L6-v2",
        )

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def device(self) -> str:
        """Device the model runs on (``"cpu"`` or ``"cuda"``)."""
        return self._device.type

    @property
    def model_name(self) -> str:
        """Model name: the model directory's basename, the hub name, or the given name."""
        return self._name

    @property
    def pooling(self) -> Pooling:
        """Pooling mode in use."""
        return self._pooling

    @property
    def model_id(self) -> str:
        """Stable tag of the vector space: model, pooling, normalisation and truncation.

        Example: ``all-MiniLM-L6-v2:mean:norm:128``. Vectors with different tags must not be
        compared with each other.
        """
        norm = "norm" if self._normalize else "raw"
        return f"{self._name}:{self._pooling}:{norm}:{self._max_seq_length}"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens the model sees per text (special tokens in, after truncation).

        Args:
            texts: Texts to count.

        Returns:
            One count per text, in input order.
        """
        _check_texts(texts)
        return [len(ids) for ids in self._tokenize(texts)["input_ids"]]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into vectors.

        Args:
            texts: Texts to encode (a sequence; a bare ``str`` is refused).

        Returns:
            ``float32`` array of shape ``(len(texts), dim)``, rows in input order; rows are
            unit-length when ``normalize`` is set. Empty input gives shape ``(0, dim)``.

        Raises:
            TypeError: If ``texts`` is a single string or contains non-strings.
        """
        _check_texts(texts)
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        features = self._tokenize(texts)
        ids: list[list[int]] = features["input_ids"]
        type_ids: list[list[int]] | None = features.get("token_type_ids")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)

        outputs: list[torch.Tensor] = []
        with torch.inference_mode():
            for batch in self._batches(order, ids):
                outputs.append(self._forward(batch, ids, type_ids))
            sorted_vectors = torch.cat(outputs).to("cpu", dtype=torch.float32)
            vectors = torch.empty_like(sorted_vectors)
            vectors[torch.tensor(order)] = sorted_vectors
        return vectors.numpy()

    def _tokenize(self, texts: Sequence[str]) -> Any:
        if len(texts) == 0:
            return {"input_ids": []}
        return self._tokenizer(
            list(texts),
            truncation=True,
            max_length=self._max_seq_length,
            padding=False,
            return_attention_mask=False,
        )

    def _batches(self, order: list[int], ids: list[list[int]]) -> list[list[int]]:
        """Group indices (sorted longest first) so that padded size fits the token budget."""
        batches: list[list[int]] = []
        current: list[int] = []
        width = 0
        for index in order:
            if current and width * (len(current) + 1) > self._max_batch_tokens:
                batches.append(current)
                current = []
            if not current:
                width = len(ids[index])  # longest of the batch: inputs are sorted
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _forward(
        self,
        batch: list[int],
        ids: list[list[int]],
        type_ids: list[list[int]] | None,
    ) -> torch.Tensor:
        """Run one right-padded batch through the model and pool it (float32, on device)."""
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        token_type_ids = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            length = len(ids[index])
            input_ids[row, :length] = torch.tensor(ids[index], dtype=torch.long)
            attention_mask[row, :length] = 1
            if type_ids is not None:
                token_type_ids[row, :length] = torch.tensor(type_ids[index], dtype=torch.long)

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self._pin:
            inputs = {k: v.pin_memory().to(self._device, non_blocking=True) for k, v in inputs.items()}
        elif self._device.type != "cpu":
            inputs = {k: v.to(self._device) for k, v in inputs.items()}

        hidden = self._model(**inputs).last_hidden_state.float()
        pooled = _pool(hidden, inputs["attention_mask"], self._pooling)
        if self._normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must contain only str, got {type(text).__name__}")


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token vectors ``(batch, tokens, dim)`` of a right-padded batch into ``(batch, dim)``."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def _declared_pooling(source: str, is_local: bool) -> Pooling:
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
    if len(modes) != 1 or modes[0] not in _POOLINGS:
        raise ValueError(
            f"model {source!r} declares pooling {modes}; TextEncoder supports exactly one of "
            f"{_POOLINGS} (pass pooling= to override)"
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
