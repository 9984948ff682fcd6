"""Tests of encoders.text.TextEncoder against the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.config import EncoderSettings
from encoders.signature import model_signature
from encoders.text import TextEncoder

DIM = 384

SCI_FI = [
    "Star Wars: Episode IV - A New Hope (1977). Genres: Action, Adventure, Sci-Fi",
    "Alien (1979). Genres: Horror, Sci-Fi",
    "Star Trek II: The Wrath of Khan (1982). Genres: Action, Adventure, Sci-Fi, Thriller",
    "Blade Runner (1982). Genres: Action, Sci-Fi, Thriller",
    "Terminator, The (1984). Genres: Action, Sci-Fi, Thriller",
]
ROMANCE = [
    "Notting Hill (1999). Genres: Comedy, Romance",
    "Pretty Woman (1990). Genres: Comedy, Romance",
    "Sleepless in Seattle (1993). Genres: Comedy, Drama, Romance",
    "Titanic (1997). Genres: Drama, Romance",
]

# Very different token lengths, including one far beyond max_seq_length (truncated).
MIXED_LENGTHS = [
    "Heat (1995). Genres: Action, Crime, Thriller",
    "a",
    " ".join(["Once upon a time in a galaxy far, far away there was a long story."] * 30),
    "",
    "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
    "The " * 60 + "end.",
    "Up",
    "Grumpier Old Men (1995). Genres: Comedy, Romance",
]


def _assert_unit_norm(vectors: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# --- model-backed tests -------------------------------------------------------------------


@pytest.mark.model
def test_shape_dtype_and_unit_norm(text_encoder: TextEncoder, movie_texts: list[str]) -> None:
    vectors = text_encoder.encode(movie_texts)
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(movie_texts), DIM)
    assert np.isfinite(vectors).all()
    _assert_unit_norm(vectors)


@pytest.mark.model
def test_properties(text_encoder: TextEncoder) -> None:
    assert text_encoder.dim == DIM
    assert text_encoder.device == "cpu"
    assert text_encoder.model_name == "all-MiniLM-L6-v2"
    assert text_encoder.pooling == "mean"  # declared by the model's 1_Pooling/config.json
    assert text_encoder.model_id == "all-MiniLM-L6-v2:mean:norm:128"


@pytest.mark.model
@pytest.mark.parametrize("empty", [[], ()])
def test_empty_input(text_encoder: TextEncoder, empty: list[str]) -> None:
    vectors = text_encoder.encode(empty)
    assert vectors.shape == (0, DIM)
    assert vectors.dtype == np.float32


@pytest.mark.model
def test_single_text_still_two_dimensional(text_encoder: TextEncoder) -> None:
    assert text_encoder.encode(["Heat (1995)"]).shape == (1, DIM)


@pytest.mark.model
def test_bare_string_is_refused(text_encoder: TextEncoder) -> None:
    with pytest.raises(TypeError, match="single str"):
        text_encoder.encode("Heat (1995)")
    with pytest.raises(TypeError, match="only str"):
        text_encoder.encode(["ok", 3])  # type: ignore[list-item]


@pytest.mark.model
def test_order_preserved_across_lengths(text_encoder: TextEncoder) -> None:
    lengths = text_encoder.count_tokens(MIXED_LENGTHS)
    assert max(lengths) == 128 and min(lengths) == 2  # truncated / only [CLS] [SEP]
    batched = text_encoder.encode(MIXED_LENGTHS)
    one_by_one = np.vstack([text_encoder.encode([t]) for t in MIXED_LENGTHS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.model
def test_reversed_input_gives_reversed_output(text_encoder: TextEncoder) -> None:
    forward = text_encoder.encode(MIXED_LENGTHS)
    backward = text_encoder.encode(MIXED_LENGTHS[::-1])
    np.testing.assert_allclose(forward[::-1], backward, atol=1e-5)


@pytest.mark.model
def test_duplicates_get_identical_vectors(text_encoder: TextEncoder) -> None:
    texts = ["Heat (1995)", "a much longer text about something else entirely", "Heat (1995)"]
    vectors = text_encoder.encode(texts)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)


@pytest.mark.model
def test_agrees_with_sentence_transformers(
    text_encoder: TextEncoder, model_path: str, movie_texts: list[str]
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(model_path, device="cpu")
    expected = np.asarray(reference.encode(movie_texts))
    actual = text_encoder.encode(movie_texts)
    assert len(movie_texts) >= 45
    cosine = _cosine(actual, expected)
    assert cosine.min() >= 0.999, f"worst agreement {cosine.min():.6f}"


@pytest.mark.model
def test_tiny_token_budget_gives_same_vectors(
    make_encoder: Callable[..., TextEncoder], text_encoder: TextEncoder, movie_texts: list[str]
) -> None:
    tiny = make_encoder(max_batch_tokens=16)  # smaller than most single texts
    texts = MIXED_LENGTHS + movie_texts[:10]
    np.testing.assert_allclose(tiny.encode(texts), text_encoder.encode(texts), atol=1e-5)
    assert tiny.model_id == text_encoder.model_id  # the budget does not change the vectors


@pytest.mark.model
@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_other_pooling_modes(
    make_encoder: Callable[..., TextEncoder],
    text_encoder: TextEncoder,
    movie_texts: list[str],
    pooling: str,
) -> None:
    encoder = make_encoder(pooling=pooling)
    assert encoder.pooling == pooling
    texts = movie_texts[:10]
    vectors = encoder.encode(texts)
    assert vectors.shape == (len(texts), DIM)
    _assert_unit_norm(vectors)
    assert (_cosine(vectors, text_encoder.encode(texts)) < 0.99).all()
    assert encoder.model_id == f"all-MiniLM-L6-v2:{pooling}:norm:128"
    assert encoder.model_id != text_encoder.model_id
    # Padding must not leak into cls/max pooling either.
    batched = encoder.encode(MIXED_LENGTHS)
    one_by_one = np.vstack([encoder.encode([t]) for t in MIXED_LENGTHS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.model
def test_without_normalisation(make_encoder: Callable[..., TextEncoder], text_encoder: TextEncoder) -> None:
    raw = make_encoder(normalize=False)
    assert raw.model_id == "all-MiniLM-L6-v2:mean:raw:128"
    vectors = raw.encode(SCI_FI)
    norms = np.linalg.norm(vectors, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(vectors / norms[:, None], text_encoder.encode(SCI_FI), atol=1e-5)


@pytest.mark.model
def test_semantic_sanity(text_encoder: TextEncoder) -> None:
    star_wars, alien = SCI_FI[0], SCI_FI[1]
    notting_hill = ROMANCE[0]
    v = text_encoder.encode([star_wars, alien, notting_hill])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.03  # measured: 0.506 vs 0.426

    # Group-level check, less sensitive to any single title: every sci-fi film is on average
    # closer to the other sci-fi films than to the romances, and vice versa.
    sci = text_encoder.encode(SCI_FI)
    rom = text_encoder.encode(ROMANCE)
    sci_sci = (sci @ sci.T - np.eye(len(SCI_FI))).sum(axis=1) / (len(SCI_FI) - 1)
    rom_rom = (rom @ rom.T - np.eye(len(ROMANCE))).sum(axis=1) / (len(ROMANCE) - 1)
    assert (sci_sci > (sci @ rom.T).mean(axis=1)).all()
    assert (rom_rom > (rom @ sci.T).mean(axis=1)).all()


@pytest.mark.model
def test_count_tokens(text_encoder: TextEncoder) -> None:
    counts = text_encoder.count_tokens(["", "hello world", "word " * 500])
    assert counts == [2, 4, 128]
    assert text_encoder.count_tokens([]) == []


@pytest.mark.model
def test_model_id_is_stable(make_encoder: Callable[..., TextEncoder], text_encoder: TextEncoder) -> None:
    again = make_encoder()
    assert again.model_id == text_encoder.model_id == "all-MiniLM-L6-v2:mean:norm:128"
    assert make_encoder(max_seq_length=64).model_id == "all-MiniLM-L6-v2:mean:norm:64"
    assert make_encoder(pooling="mean").model_id == text_encoder.model_id


@pytest.mark.model
def test_model_name_defaults_to_directory_name(model_path: str) -> None:
    encoder = TextEncoder(model_path, device="cpu")
    assert encoder.model_name == Path(model_path).name
    assert encoder.model_id.startswith(f"{Path(model_path).name}:mean:norm:")


@pytest.mark.model
def test_declared_pooling_is_read_from_model_dir(model_path: str, tmp_path: Path) -> None:
    model_dir = tmp_path / "minilm-cls"
    shutil.copytree(model_path, model_dir)
    config = model_dir / "1_Pooling" / "config.json"
    settings = json.loads(config.read_text())
    settings.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(settings))
    encoder = TextEncoder(model_dir, device="cpu")
    assert encoder.pooling == "cls"
    assert encoder.model_name == "minilm-cls"
    assert encoder.model_id == "minilm-cls:cls:norm:128"


@pytest.mark.model
def test_max_seq_length_beyond_model_limit(model_path: str) -> None:
    with pytest.raises(ValueError, match="max_position_embeddings"):
        TextEncoder(model_path, device="cpu", max_seq_length=4096)


@pytest.mark.model
def test_tokenize_then_encode_ids_equals_encode(text_encoder: TextEncoder, movie_texts: list[str]) -> None:
    texts = MIXED_LENGTHS + movie_texts[:10]
    ids = text_encoder.tokenize(texts)
    assert [len(i) for i in ids] == text_encoder.count_tokens(texts)
    np.testing.assert_allclose(text_encoder.encode_ids(ids), text_encoder.encode(texts), atol=1e-6)
    assert text_encoder.encode_ids([]).shape == (0, DIM)


@pytest.mark.model
def test_lone_surrogates_do_not_crash(text_encoder: TextEncoder) -> None:
    vectors = text_encoder.encode(["Heat \ud800 (1995)", "Heat ? (1995)"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # replaced by "?"


@pytest.mark.model
def test_int8_stays_close_to_fp32(
    make_encoder: Callable[..., TextEncoder], text_encoder: TextEncoder, all_movie_texts: list[str]
) -> None:
    quantized = make_encoder(quantize="int8")
    assert quantized.model_id == "all-MiniLM-L6-v2:mean:norm:128:int8"
    assert quantized.dtype == "int8"
    texts = all_movie_texts[::20]  # ~490 real item texts
    vectors = quantized.encode(texts)
    _assert_unit_norm(vectors)
    cosine = _cosine(vectors, text_encoder.encode(texts))
    assert cosine.min() >= 0.995, f"worst int8 agreement {cosine.min():.4f}"  # whole catalog: 0.997


@pytest.mark.model
def test_from_settings_picks_the_device_budget_and_signature(model_path: str) -> None:
    settings = EncoderSettings(model="", device="cpu", max_batch_tokens=0, cache_size=0, quantize="none")
    encoder = TextEncoder.from_settings(settings)
    assert encoder.max_batch_tokens == 1024
    assert encoder.cache is None
    signature = model_signature(settings)
    assert (signature.model_id, signature.dim) == (encoder.model_id, encoder.dim)
    assert model_signature(settings.model_copy(update={"quantize": "int8"})).model_id.endswith(":int8")


# --- argument validation (fails before any weights are loaded) ----------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_tokens": 0}, "max_batch_tokens"),
        ({"max_batch_tokens": -8}, "max_batch_tokens"),
        ({"max_seq_length": 0}, "max_seq_length"),
        ({"pooling": "sum"}, "pooling"),
        ({"pooling": "MEAN"}, "pooling"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"threads": -1}, "threads"),
        ({"quantize": "int4"}, "quantize"),
        ({"quantize": "int8", "device": "cpu", "dtype": "float16"}, "float32"),
    ],
)
def test_bad_arguments_fail_fast(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextEncoder("/nonexistent/model", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"max_batch_tokens": "8192"}, {"max_seq_length": 1.5}])
def test_non_integer_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        TextEncoder("/nonexistent/model", **options)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(ValueError, match="cuda"):
        TextEncoder("/nonexistent/model", device="cuda")


_needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.model
@_needs_cuda
def test_cuda_float16_agrees_with_cpu_float32(
    make_encoder: Callable[..., TextEncoder], text_encoder: TextEncoder, movie_texts: list[str]
) -> None:
    gpu = make_encoder(device="cuda")
    assert (gpu.device, gpu.dtype) == ("cuda", "float16")
    texts = MIXED_LENGTHS + movie_texts
    vectors = gpu.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), DIM)
    _assert_unit_norm(vectors)
    cosine = _cosine(vectors, text_encoder.encode(texts))
    assert cosine.min() >= 0.999, f"worst agreement {cosine.min():.6f}"


@pytest.mark.model
@_needs_cuda
def test_cuda_attention_does_not_use_cudnn(
    make_encoder: Callable[..., TextEncoder], movie_texts: list[str]
) -> None:
    # cuDNN attention builds a plan per batch shape; the encoder's batches vary in shape.
    gpu = make_encoder(device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        gpu.encode(movie_texts)
    ops = {event.key for event in profile.key_averages()}
    assert any("scaled_dot_product" in op for op in ops), sorted(ops)
    assert not any("cudnn_attention" in op for op in ops), sorted(ops)


@pytest.mark.model
@_needs_cuda
def test_cuda_pipelined_chunks_keep_input_order(
    make_encoder: Callable[..., TextEncoder], all_movie_texts: list[str]
) -> None:
    # More texts than one pipeline chunk: tokenisation of the next chunk overlaps GPU work,
    # and the vectors must still come back in input order.
    gpu = make_encoder(device="cuda", dtype="float32")
    texts = all_movie_texts[:5000]
    together = gpu.encode(texts)
    one_by_one = np.concatenate([gpu.encode(texts[i : i + 500]) for i in range(0, len(texts), 500)])
    assert _cosine(together, one_by_one).min() >= 0.9999


def test_empty_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="model"):
        TextEncoder("")
