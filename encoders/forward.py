"""The model side of encoding: loading, token-budget batches, padding, pooling, int8 attention.

Sized to the machine: the default token budget per device and the CPUs torch may use.
Torch, numpy and ``transformers``' model classes; no tokenizer, nothing HTTP.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend

from encoders.signature import Pooling

# Names of attention value projections (BERT/RoBERTa/MPNet, DistilBERT, others): kept float32
# by the int8 mode, see quantize_attention.
_VALUE_PROJECTIONS = frozenset({"value", "v_lin", "v", "v_proj"})
# Token budget per forward pass when the settings leave it at 0. CPU, all-MiniLM-L6-v2 on
# MovieLens texts: 1024 and 2048 tie on 2 threads, 1024 is 5% faster on 1 thread (CPU time per
# item), 8192 is 20-28% slower: activations that fit the caches win. A GPU needs large batches
# to keep its cores busy.
_DEFAULT_BATCH_TOKENS: dict[str, int] = {"cpu": 1024, "cuda": 16384}
# Attention kernels allowed on CUDA: every one but cuDNN's. cuDNN builds an execution plan for
# each new (batch, length) shape, and batches cut from a stream of texts rarely repeat a shape:
# on an H100 the plan builds made a 256-text call 9x slower (p50 76.9 ms against 8.6) and the
# encoder service 5x slower. Padded batches run the memory-efficient kernel instead.
CUDA_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def token_batches(order: list[int], ids: Sequence[Sequence[int]], budget: int) -> list[list[int]]:
    """Group indices (sorted longest first) so that each batch's padded size fits ``budget``.

    A text longer than the budget still gets a batch, alone.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for index in order:
        if current and width * (len(current) + 1) > budget:
            batches.append(current)
            current = []
        if not current:
            width = len(ids[index])  # longest of the batch: inputs are sorted
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padded_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``(input ids, attention mask)``, both int64 of shape (rows, longest row)."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    # Rows are right-padded, so the row-major positions of the mask are the tokens in order.
    input_ids[mask] = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
    )
    return input_ids, mask.astype(np.int64)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool token vectors ``(batch, tokens, dim)`` of a right-padded batch into ``(batch, dim)``."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def quantize_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Quantise the attention's query, key and output projections to int8, dynamically.

    Everything else stays float32. Measured on all-MiniLM-L6-v2 over the 9,742 MovieLens item
    texts, min cosine to fp32: 0.95 with every linear layer quantised (the feed-forward inputs
    carry outlier activations that 8-bit dynamic quantisation rounds badly), 0.9899 with all
    four attention projections (value errors pass straight into the output), 0.997 with query,
    key and output only.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and ".attention." in f".{name}."
        and name.rsplit(".", 1)[-1] not in _VALUE_PROJECTIONS
    ]
    if not names:
        raise ValueError("quantize='int8' found no attention projections (nn.Linear) to quantise")
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8)


def load_model(source: str, dtype: torch.dtype, int8: bool, device: torch.device) -> torch.nn.Module:
    """The transformers model of ``source`` in eval mode on ``device``, int8 attention if asked."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(source, dtype=dtype)
    model.eval()
    if getattr(model, "pooler", None) is not None:
        # BERT's pooler (dense + tanh over [CLS]) feeds no pooling mode here: skip its work.
        model.pooler = None
    if int8:
        model = quantize_attention(model)
    return model.to(device)


def default_batch_tokens(device: str) -> int:
    """Token budget per forward pass used when none is configured (``cpu`` or ``cuda``)."""
    return _DEFAULT_BATCH_TOKENS[device]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def set_cpu_threads(threads: int) -> None:
    """Set torch's process-wide thread count: ``threads``, or 0 for :func:`available_cpus`."""
    wanted = threads or available_cpus()
    if wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)
