"""In-process text encoder: item text in, fixed-size float32 vectors out.

This module turns item text (e.g. ``"Title. Genres: a, b"``) into dense vectors with a
BERT-family model loaded through ``transformers`` (``AutoTokenizer`` / ``AutoModel``), pooled the
way the model declares it (sentence-transformers ``modules.json`` / ``1_Pooling/config.json``).
It is a plain, synchronous library: it imports nothing HTTP (no client, no server) and nothing
Kafka, and uses no asyncio; only a hub *name* (not a local directory) makes loading go through
``huggingface_hub``, as ``transformers`` itself does. Callers on an event loop run
:meth:`TextEncoder.encode` in a single-thread executor.

Vectors are tagged with :attr:`TextEncoder.model_id` so that vectors from different models (or
different pooling / normalisation / truncation / quantisation settings) are never mixed.

Speed, in order of effect: texts are deduplicated and looked up in a content-hash cache; the
rest are sorted by token length and cut into batches by a token budget, so padding is minimal;
forward passes run under ``torch.inference_mode``. On CUDA, weights are float16 (or bfloat16),
inputs go through pinned memory with non-blocking copies, nothing synchronises until the last
batch, the next chunk of texts is tokenised on a helper thread while the GPU works, and
attention avoids cuDNN's kernel, which plans anew for every batch shape. On CPU,
the thread count follows the CPUs the process may use, and ``quantize="int8"`` runs the
attention's query, key and output projections with dynamic int8 quantisation.

The model id and pooling are read in ``encoders.signature``, options checked in
``encoders.checks``; loading, batching, padding, pooling and int8 quantisation live in
``encoders.forward``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch.nn.attention import sdpa_kernel

from encoders.cache import VectorCache
from encoders.checks import Device, Dtype, Quantize, check_texts, resolve_options, scrub
from encoders.forward import (
    CUDA_ATTENTION,
    default_batch_tokens,
    load_model,
    padded_batch,
    pool,
    set_cpu_threads,
    token_batches,
)
from encoders.signature import Pooling, declared_pooling, default_name, format_model_id

if TYPE_CHECKING:
    from encoders.config import EncoderSettings

# On CUDA, texts are tokenised in chunks of this many, the next chunk on a helper thread while
# the GPU runs the current one. Large enough that sorting within a chunk keeps padding minimal
# and each chunk fills several forward batches; small enough that the GPU starts after a few
# milliseconds of tokenisation instead of after all of it.
_PIPELINE_CHUNK_TEXTS = 4096


class TextEncoder:
    """Encode texts into float32 vectors with a Hugging Face encoder model.

    Texts are tokenised, sorted by token length (longest first) and grouped into batches whose
    padded size (longest length x number of texts) stays within ``max_batch_tokens``; results
    are returned in input order.

    Not safe for concurrent :meth:`encode` calls from several threads; use one thread (e.g. a
    single-thread executor) for the model. :meth:`tokenize` may run on another thread.
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
        quantize: Quantize = "none",
        cache: VectorCache | None = None,
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
            threads: CPU threads for torch (process-wide ``torch.set_num_threads``); 0 uses the
                CPUs this process may use (affinity mask and cgroup quota). Ignored on CUDA.
            pooling: Force a pooling mode; ``None`` uses the one the model declares
                (mean when it declares none).
            name: Name used in :attr:`model_name` / :attr:`model_id`; defaults to the model
                directory's basename, or the hub name.
            quantize: ``"int8"`` quantises the attention's query, key and output projections to
                int8 (dynamic, per-channel weights; CPU only). The model id gets an ``:int8``
                suffix.
            cache: Content-hash cache consulted before encoding and filled after; ``None``
                encodes every call (identical texts within one call are still encoded once).

        Raises:
            TypeError: If an integer option is not an int.
            ValueError: On invalid options, an unavailable CUDA device, int8 on CUDA, a
                max_seq_length the model cannot handle, or a model whose declared modules /
                pooling this encoder cannot reproduce.
        """
        torch_device, torch_dtype = resolve_options(
            device, dtype, pooling, quantize, max_seq_length, max_batch_tokens, threads
        )
        source = os.fspath(model)
        if not source:
            raise ValueError("model must be a model directory or hub name, got ''")
        is_local = os.path.isdir(source)

        self._device = torch_device
        self._max_seq_length = max_seq_length
        self._max_batch_tokens = max_batch_tokens
        self._normalize = normalize
        self._quantize: Quantize = quantize
        self._cache = cache
        self._pin = self._device.type == "cuda"
        self._name = name or default_name(source, is_local)
        # The tokenizer's Python wrapper mutates its truncation state on every call, which
        # fails ("Already borrowed") if two threads tokenise at once.
        self._tokenize_lock = threading.Lock()

        # Pooling is resolved before the (larger) weights are loaded, to fail fast.
        self._pooling: Pooling = pooling or declared_pooling(source, is_local)

        if self._device.type == "cpu":
            set_cpu_threads(threads)

        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(source)
        self._model = load_model(source, torch_dtype, quantize == "int8", self._device)

        limit = getattr(self._model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_seq_length > limit:
            raise ValueError(
                f"max_seq_length={max_seq_length} exceeds the model's max_position_embeddings={limit}"
            )
        pad_id = self._tokenizer.pad_token_id
        self._pad_id = int(pad_id) if pad_id is not None else 0
        self._token_types = "token_type_ids" in self._tokenizer.model_input_names
        self._dim = int(self._model.config.hidden_size)

    @classmethod
    def from_settings(cls, settings: EncoderSettings, cache: VectorCache | None = None) -> TextEncoder:
        """Build an encoder from :class:`encoders.config.EncoderSettings`.

        Args:
            settings: Encoder settings; an empty ``model`` selects the bundled
                all-MiniLM-L6-v2.
            cache: Cache to use; by default a new one of ``settings.cache_size`` entries
                (none when that is 0).

        Returns:
            The loaded encoder.
        """
        if cache is None and settings.cache_size > 0:
            cache = VectorCache(settings.cache_size)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        budget = settings.max_batch_tokens or default_batch_tokens(device)
        return cls(
            settings.resolved_model(),
            device=device,
            dtype=settings.dtype,
            max_seq_length=settings.max_seq_length,
            max_batch_tokens=budget,
            normalize=settings.normalize,
            threads=settings.threads,
            name=settings.model_name(),
            quantize=settings.quantize,
            cache=cache,
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
    def dtype(self) -> str:
        """Precision of the forward pass: ``float32``, ``float16``, ``bfloat16`` or ``int8``."""
        if self._quantize == "int8":
            return "int8"
        return str(self._model.dtype).removeprefix("torch.")

    @property
    def model(self) -> torch.nn.Module:
        """The underlying transformers model (read-only use: sizes, inspection)."""
        return cast(torch.nn.Module, self._model)

    @property
    def model_name(self) -> str:
        """Model name: the model directory's basename, the hub name, or the given name."""
        return self._name

    @property
    def pooling(self) -> Pooling:
        """Pooling mode in use."""
        return self._pooling

    @property
    def max_batch_tokens(self) -> int:
        """Token budget of one forward pass."""
        return self._max_batch_tokens

    @property
    def cache(self) -> VectorCache | None:
        """The content-hash cache, if any."""
        return self._cache

    @property
    def model_id(self) -> str:
        """Stable tag of the vector space: model, pooling, normalisation, truncation, quantisation.

        Example: ``all-MiniLM-L6-v2:mean:norm:128`` (``...:128:int8`` when quantised). Vectors
        with different tags must not be compared with each other.
        """
        return format_model_id(
            self._name, self._pooling, self._normalize, self._max_seq_length, self._quantize
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens the model sees per text (special tokens in, after truncation).

        Args:
            texts: Texts to count.

        Returns:
            One count per text, in input order.
        """
        return [len(ids) for ids in self.tokenize(texts)]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_seq_length`` (special tokens included).

        Thread-safe; the encoder service runs it off the model thread.

        Args:
            texts: Texts to tokenise. Lone surrogates (not encodable as UTF-8) become ``?``.

        Returns:
            One list of ids per text, in input order.

        Raises:
            TypeError: If ``texts`` is a single string or contains non-strings.
        """
        check_texts(texts)
        if len(texts) == 0:
            return []
        clean = [scrub(t) for t in texts]
        with self._tokenize_lock:
            features = self._tokenizer(
                clean,
                truncation=True,
                max_length=self._max_seq_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
        return cast(list[list[int]], features["input_ids"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into vectors.

        Identical texts are encoded once; with a cache, texts seen before are not encoded again.

        Args:
            texts: Texts to encode (a sequence; a bare ``str`` is refused).

        Returns:
            ``float32`` array of shape ``(len(texts), dim)``, rows in input order; rows are
            unit-length when ``normalize`` is set. Empty input gives shape ``(0, dim)``.

        Raises:
            TypeError: If ``texts`` is a single string or contains non-strings.
        """
        check_texts(texts)
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        slot_of: dict[str, int] = {}
        slots = [slot_of.setdefault(text, len(slot_of)) for text in texts]
        unique = list(slot_of)
        found: list[np.ndarray | None]
        found = (
            self._cache.get_many(self.model_id, unique) if self._cache is not None else [None] * len(unique)
        )
        missing = [i for i, vector in enumerate(found) if vector is None]
        vectors = np.empty((len(unique), self._dim), dtype=np.float32)
        if missing:
            fresh_texts = [unique[i] for i in missing]
            fresh = self._encode_texts(fresh_texts)
            vectors[missing] = fresh
            if self._cache is not None:
                self._cache.put_many(self.model_id, fresh_texts, fresh)
        for i, vector in enumerate(found):
            if vector is not None:
                vectors[i] = vector
        if len(unique) == len(texts):
            return vectors
        return vectors[slots]

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Encode already tokenised texts (from :meth:`tokenize`); no cache, no deduplication.

        Args:
            ids: Token ids per text, each at most ``max_seq_length`` long.

        Returns:
            ``float32`` array of shape ``(len(ids), dim)``, rows in input order.
        """
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        with torch.inference_mode():
            return self._run(ids).to("cpu", dtype=torch.float32).numpy()

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Tokenise and encode; on CUDA, tokenisation of the next chunk overlaps GPU work."""
        if self._device.type != "cuda" or len(texts) <= _PIPELINE_CHUNK_TEXTS:
            return self.encode_ids(self.tokenize(texts))
        chunks = [texts[i : i + _PIPELINE_CHUNK_TEXTS] for i in range(0, len(texts), _PIPELINE_CHUNK_TEXTS)]
        parts: list[torch.Tensor] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer") as pool:
            pending: Future[list[list[int]]] = pool.submit(self.tokenize, chunks[0])
            with torch.inference_mode():
                for k in range(len(chunks)):
                    ids = pending.result()
                    if k + 1 < len(chunks):
                        pending = pool.submit(self.tokenize, chunks[k + 1])
                    # Launches the chunk's kernels and returns without waiting for them.
                    parts.append(self._run(ids))
                # The only synchronisation: one copy of every vector back to the host.
                return torch.cat(parts).to("cpu", dtype=torch.float32).numpy()

    def _run(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Encode ids in token-budget batches; float32 vectors on the device, in input order."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        batches = token_batches(order, ids, self._max_batch_tokens)
        outputs = [self._forward([ids[i] for i in batch]) for batch in batches]
        sorted_vectors = torch.cat(outputs)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return sorted_vectors.index_select(0, self._to_device(inverse))

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._pin:
            # Pinned host memory makes the copy asynchronous; the caching host allocator keeps
            # the buffer alive until the copy has run.
            return tensor.pin_memory().to(self._device, non_blocking=True)
        if self._device.type != "cpu":
            return tensor.to(self._device)
        return tensor

    def _forward(self, rows: list[Sequence[int]]) -> torch.Tensor:
        """Run one right-padded batch through the model and pool it (float32, on device)."""
        input_ids, mask = padded_batch(rows, self._pad_id)
        inputs = {
            "input_ids": self._to_device(torch.from_numpy(input_ids)),
            "attention_mask": self._to_device(torch.from_numpy(mask)),
        }
        if self._token_types:
            # One sequence per text: every token is of type 0, as the tokenizer would say.
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        kernels = sdpa_kernel(CUDA_ATTENTION) if self._device.type == "cuda" else contextlib.nullcontext()
        with kernels:
            hidden = self._model(**inputs).last_hidden_state.float()
        pooled = pool(hidden, inputs["attention_mask"], self._pooling)
        if self._normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled
