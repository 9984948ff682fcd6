"""Validation of :class:`~encoders.text.TextEncoder`'s options and inputs.

Bad arguments fail before any weights load, with messages that say what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from encoders.signature import POOLINGS

Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "float16", "bfloat16"]
Quantize = Literal["none", "int8"]

_DEVICES: tuple[str, ...] = get_args(Device)
_QUANTIZE: tuple[str, ...] = get_args(Quantize)
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_options(
    device: str,
    dtype: str,
    pooling: str | None,
    quantize: str,
    max_seq_length: int,
    max_batch_tokens: int,
    threads: int,
) -> tuple[torch.device, torch.dtype]:
    """Check the encoder's options; the device and weight precision they select.

    ``"auto"`` selects CUDA when available and float16 on CUDA, float32 on CPU.

    Raises:
        TypeError: If an integer option is not an int.
        ValueError: On an invalid option, an unavailable CUDA device, or int8 with anything
            but float32 weights on CPU.
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {tuple(_DTYPES)}, got {dtype!r}")
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}")
    if quantize not in _QUANTIZE:
        raise ValueError(f"quantize must be one of {_QUANTIZE}, got {quantize!r}")
    _check_int("max_seq_length", max_seq_length, minimum=1)
    _check_int("max_batch_tokens", max_batch_tokens, minimum=1)
    _check_int("threads", threads, minimum=0)
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")

    resolved_device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if quantize == "int8" and resolved_device != "cpu":
        raise ValueError("quantize='int8' runs on CPU only; use float16/bfloat16 on CUDA")
    if dtype == "auto":
        torch_dtype = torch.float16 if resolved_device == "cuda" else torch.float32
    else:
        torch_dtype = _DTYPES[dtype]
    if quantize == "int8" and torch_dtype != torch.float32:
        raise ValueError(f"quantize='int8' needs float32 weights, got dtype={dtype!r}")
    return torch.device(resolved_device), torch_dtype


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def scrub(text: str) -> str:
    """The text, with lone surrogates (which the tokenizer refuses) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def check_texts(texts: Sequence[str]) -> None:
    """Refuse a bare string (a sequence of characters) and non-string items."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must contain only str, got {type(text).__name__}")
