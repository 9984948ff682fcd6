"""``streamrank bench encoder``: streamrank's encoder against the usual alternatives.

Encodes real item texts (MovieLens title, genres and tags, exactly as the worker builds them)
with the same model on the same device, in one process, and prints for each encoder its
throughput (items/s, tokens/s), its latency per call of ``--batch`` texts (p50/p99) and its
peak memory, plus the agreement (min and mean cosine) of its vectors with the fp32 reference
(sentence-transformers, normalised). Rows:

- ``streamrank``: :class:`encoders.text.TextEncoder` as configured (fp32 on CPU, fp16 on CUDA);
- ``streamrank int8``: the same with ``quantize="int8"`` (CPU only);
- ``sentence-transformers``: ``SentenceTransformer.encode`` with its defaults (and fp16 on CUDA);
- ``naive``: a plain transformers loop, fixed batches of 32 in input order, fp32, mean pooling;
- ``service``: with ``--clients C``, ``streamrank encode-server`` in a child process driven by
  C concurrent HTTP clients.

Every encoder is loaded first; the timed runs then take turns (``--runs`` rounds, median
reported), so that a change of load on a shared machine does not favour one row. Memory is
the size of the encoder's weights plus the peak growth of memory during its latency pass
(resident set on CPU, allocated memory on CUDA): what one such encoder needs. The content-hash
cache is off for every row: it would answer repeated runs without the model.
With ``--json`` the last line is one JSON object with the figures.

The alternatives are built in ``stream.bench.encoder_baselines`` and memory is read by
``stream.bench.device``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.device import free_memory, memory_mib, peak_mib, reset_peak, sync, weights_mib
from stream.bench.encoder_baselines import measure_service, naive_encoder, random_bert_base
from stream.bench.encoder_results import BASELINE, FP16, INT8, NAIVE, Row, encoder_summary, print_table
from stream.config import Settings
from stream.core.contracts import ItemUpsert
from stream.datasets import movielens

HELP = "encoder throughput, latency, memory and agreement vs sentence-transformers"
DESCRIPTION = (
    "Encode real MovieLens item texts with streamrank's encoder, sentence-transformers and a "
    "naive transformers loop (same model, same device) and print one row per encoder."
)
RANDOM_BERT_BASE = "random-bert-base"
# Texts each encoder encodes once before the timed runs.
_WARMUP_TEXTS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``streamrank bench encoder``."""
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where every encoder runs (default: cuda when available, else cpu)",
    )
    parser.add_argument("--n", type=int, default=2000, help="item texts to encode (at most the catalog)")
    parser.add_argument(
        "--model",
        default="",
        help=f"model directory or hub name; '{RANDOM_BERT_BASE}': a randomly initialised BertModel "
        "with the bert-base config and the bundled tokenizer (speed only); default: "
        "STREAMRANK_ENCODER_MODEL, else the bundled all-MiniLM-L6-v2",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per encoder (median reported)")
    parser.add_argument(
        "--batch", type=int, default=256, help="texts per call in the latency pass (the worker's item batch)"
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="streamrank's token budget (default: STREAMRANK_ENCODER_MAX_BATCH_TOKENS, else per device)",
    )
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 row on CPU")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="throughput by wall time, or by CPU time of the encoding thread (steadier on a shared "
        "machine; CPU only, with STREAMRANK_ENCODER_THREADS=1 so that one thread does all the work)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        help="also measure the encoder service under this many concurrent clients (0: skip)",
    )
    parser.add_argument("--data", help="MovieLens ml-latest-small directory (env STREAMRANK_DATA)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")


def item_texts(data_dir: str, cache_dir: str) -> list[str]:
    """The encoder text of every MovieLens item, as the worker builds it from the replay."""
    data = movielens.resolve_data_dir(data_dir, cache_dir)
    tags = movielens.load_tags(data)
    texts = []
    for movie in movielens.load_movies(data):
        message = movielens.item_message(movie, tags.get(movie.movie_id, []))
        item = ItemUpsert(
            item_id=message["item_id"],
            title=message["title"],
            text=message.get("text", ""),
            category=message.get("category", ""),
            ts=message.get("ts"),
        )
        texts.append(item.encoder_text())
    return texts


def spread(texts: list[str], n: int) -> list[str]:
    """``n`` texts spread evenly over the list (all of them when ``n`` is larger)."""
    if n >= len(texts):
        return list(texts)
    step = len(texts) / n
    return [texts[int(i * step)] for i in range(n)]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; returns the exit code."""
    import torch

    if args.n <= 0 or args.runs <= 0 or args.batch <= 0 or args.clients < 0:
        print("--n, --runs and --batch must be > 0 and --clients >= 0", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print(
            f"--device cuda: CUDA is not available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}); install a CUDA build of torch "
            "(make install TORCH_SPEC=torch) on a machine with an NVIDIA GPU, or use --device cpu",
            file=sys.stderr,
        )
        return 2
    # Progress bars would interleave with the table; they change no setting that is measured.
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.clock == "cpu" and (device != "cpu" or settings.encoder.threads != 1 or args.clients):
        print(
            "--clock cpu measures one thread: use it with --device cpu, STREAMRANK_ENCODER_THREADS=1 "
            "and without --clients",
            file=sys.stderr,
        )
        return 2
    texts = spread(item_texts(settings.data, settings.cache_dir), args.n)
    with tempfile.TemporaryDirectory(prefix="streamrank-bench-") as tmp:
        model_arg = args.model or settings.encoder.model
        if model_arg == RANDOM_BERT_BASE:
            model_path, model_label = random_bert_base(Path(tmp) / "model"), RANDOM_BERT_BASE
        else:
            model_path = model_arg or settings.encoder.resolved_model()
            model_label = model_arg or "all-MiniLM-L6-v2"
        result = _bench(args, settings, device, texts, model_path, model_label, model_arg, tmp)
    print_table(result)
    if args.json:
        print(json.dumps(result["summary"], separators=(",", ":")))
    return 0


@dataclass
class _Candidate:
    name: str
    encode: Callable[[list[str]], np.ndarray]
    weights_mib: float
    rates: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None


def _bench(
    args: argparse.Namespace,
    settings: Settings,
    device: str,
    texts: list[str],
    model_path: str,
    model_label: str,
    model_arg: str,
    workdir: str,
) -> dict[str, Any]:
    from encoders.forward import default_batch_tokens

    enc_settings = settings.encoder
    budget = args.max_batch_tokens or enc_settings.max_batch_tokens or default_batch_tokens(device)
    candidates, tokens, streamrank_name = _load_candidates(
        args, enc_settings, device, texts, model_path, model_label, budget
    )
    _timed_runs(candidates, texts, args.runs, args.clock, device)
    rows = _rows(candidates, texts, tokens, args.batch, device)
    # Release the models before the service (if any) loads its own.
    candidates.clear()
    free_memory(device)

    service: dict[str, Any] | None = None
    if args.clients:
        env_model = model_path if model_arg else ""  # empty: the service loads the bundled model
        service = measure_service(
            env_model, device, budget, texts, args.clients, args.batch, enc_settings, Path(workdir)
        )
        rows.append(
            Row(
                name=f"service, {args.clients} clients",
                items_per_s=service["items_per_s"],
                tokens_per_s=service["items_per_s"] * tokens / len(texts),
                p50_ms=service["p50_ms"],
                p99_ms=service["p99_ms"],
                peak_mib=None,
            )
        )
    run_facts = {
        "device": device,
        "model": model_label,
        "n": len(texts),
        "runs": args.runs,
        "clock": args.clock,
        "mean_tokens": round(tokens / len(texts), 2),
        "max_batch_tokens": budget,
    }
    summary = encoder_summary(rows, streamrank_name, run_facts, service, args.clients)
    return {"rows": rows, "summary": summary}


def _load_candidates(
    args: argparse.Namespace,
    enc_settings: Any,
    device: str,
    texts: list[str],
    model_path: str,
    model_label: str,
    budget: int,
) -> tuple[list[_Candidate], int, str]:
    """Every encoder of the run, loaded; the texts' token count; the name of streamrank's row."""
    import torch

    from encoders.text import TextEncoder

    common: dict[str, Any] = {
        "device": device,
        "max_seq_length": enc_settings.max_seq_length,
        "max_batch_tokens": budget,
        "normalize": True,
        "threads": enc_settings.threads,
        "name": model_label,
    }
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
        print("sentence-transformers is not installed (pip install -e .[dev]): its rows are skipped")

    candidates: list[_Candidate] = []

    def load(name: str, encode: Callable[[list[str]], np.ndarray], module: torch.nn.Module) -> None:
        candidates.append(_Candidate(name, encode, weights_mib(module)))

    print("loading the encoders ...", file=sys.stderr, flush=True)
    encoder = TextEncoder(model_path, **common)
    tokens = sum(encoder.count_tokens(texts))
    streamrank_name = f"streamrank ({encoder.dtype})"
    load(streamrank_name, encoder.encode, encoder.model)
    if device == "cpu" and not args.no_int8:
        quantized = TextEncoder(model_path, quantize="int8", **common)
        load(INT8, quantized.encode, quantized.model)
    if SentenceTransformer is not None:
        for name, half in ((BASELINE, False), (FP16, True)):
            if half and device != "cuda":
                continue
            st = SentenceTransformer(model_path, device=device)
            st.max_seq_length = enc_settings.max_seq_length
            if half:
                st.half()
            load(name, st.encode, st)
    naive, naive_model = naive_encoder(model_path, device, enc_settings.max_seq_length)
    load(NAIVE, naive, naive_model)
    return candidates, tokens, streamrank_name


def _timed_runs(
    candidates: list[_Candidate], texts: list[str], runs: int, clock_name: str, device: str
) -> None:
    """Encode every text ``runs`` times with each encoder, recording its rates and vectors.

    Timed runs take turns across encoders, so that a change of load on a shared machine
    affects all of them alike instead of whichever ran then.
    """
    for candidate in candidates:
        candidate.encode(texts[:_WARMUP_TEXTS])
    clock = time.thread_time if clock_name == "cpu" else time.perf_counter
    for run_no in range(runs):
        for candidate in candidates:
            print(f"run {run_no + 1}/{runs}: {candidate.name} ...", file=sys.stderr, flush=True)
            sync(device)
            started = clock()
            candidate.vectors = np.asarray(candidate.encode(texts))
            candidate.rates.append(len(texts) / (clock() - started))


def _rows(candidates: list[_Candidate], texts: list[str], tokens: int, batch: int, device: str) -> list[Row]:
    """One row per encoder: median rate, latency per call of ``batch`` texts, memory, agreement."""
    by_name = {c.name: c for c in candidates}
    reference = _normalised(by_name[BASELINE if BASELINE in by_name else NAIVE].vectors)
    rows: list[Row] = []
    for candidate in candidates:
        print(f"latency: {candidate.name} ...", file=sys.stderr, flush=True)
        latencies, peak = _latency_pass(candidate.encode, texts, batch, device)
        cosine = (_normalised(candidate.vectors) * reference).sum(axis=1)
        items_per_s = float(np.median(candidate.rates))
        rows.append(
            Row(
                name=candidate.name,
                items_per_s=items_per_s,
                tokens_per_s=items_per_s * tokens / len(texts),
                p50_ms=float(np.percentile(latencies, 50)) * 1000,
                p99_ms=float(np.percentile(latencies, 99)) * 1000,
                peak_mib=None if peak is None else candidate.weights_mib + peak,
                min_cosine=float(cosine.min()),
                mean_cosine=float(cosine.mean()),
            )
        )
    return rows


def _latency_pass(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], batch: int, device: str
) -> tuple[list[float], float | None]:
    """Latency of each call of ``batch`` texts, and the peak memory growth during the calls."""
    free_memory(device)
    before = memory_mib(device)
    reset_peak(device)
    latencies = []
    for i in range(0, len(texts), batch):
        started = time.perf_counter()
        encode(texts[i : i + batch])
        latencies.append(time.perf_counter() - started)
    peak = peak_mib(device)
    return latencies, None if peak is None else max(peak - before, 0.0)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
