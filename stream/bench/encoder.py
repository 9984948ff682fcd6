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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import Settings
from stream.core.contracts import ItemUpsert
from stream.datasets import movielens

HELP = "encoder throughput, latency, memory and agreement vs sentence-transformers"
DESCRIPTION = (
    "Encode real MovieLens item texts with streamrank's encoder, sentence-transformers and a "
    "naive transformers loop (same model, same device) and print one row per encoder."
)
RANDOM_BERT_BASE = "random-bert-base"
# sentence-transformers' own default batch size, used by the naive loop as well.
_NAIVE_BATCH = 32
_WARMUP_TEXTS = 64


@dataclass
class Row:
    """Figures of one encoder."""

    name: str
    items_per_s: float
    tokens_per_s: float
    p50_ms: float
    p99_ms: float
    peak_mib: float | None
    min_cosine: float | None = None
    mean_cosine: float | None = None


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
            model_path, model_label = _random_bert_base(Path(tmp) / "model"), RANDOM_BERT_BASE
        else:
            model_path = model_arg or settings.encoder.resolved_model()
            model_label = model_arg or "all-MiniLM-L6-v2"
        result = _bench(args, settings, device, texts, model_path, model_label, model_arg, tmp)
    _print_table(result)
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
    import torch

    from encoders.text import TextEncoder, default_batch_tokens

    enc_settings = settings.encoder
    budget = args.max_batch_tokens or enc_settings.max_batch_tokens or default_batch_tokens(device)
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
        candidates.append(_Candidate(name, encode, _weights_mib(module)))

    print("loading the encoders ...", file=sys.stderr, flush=True)
    encoder = TextEncoder(model_path, **common)
    tokens = sum(encoder.count_tokens(texts))
    streamrank_name = f"streamrank ({encoder.dtype})"
    load(streamrank_name, encoder.encode, encoder.model)
    if device == "cpu" and not args.no_int8:
        quantized = TextEncoder(model_path, quantize="int8", **common)
        load("streamrank (int8)", quantized.encode, quantized.model)
    baseline_name = "sentence-transformers default"
    if SentenceTransformer is not None:
        for name, half in ((baseline_name, False), ("sentence-transformers fp16", True)):
            if half and device != "cuda":
                continue
            st = SentenceTransformer(model_path, device=device)
            st.max_seq_length = enc_settings.max_seq_length
            if half:
                st.half()
            load(name, st.encode, st)
    naive_name = "naive loop (batch 32, fp32)"
    naive, naive_model = _naive_encoder(model_path, device, enc_settings.max_seq_length)
    load(naive_name, naive, naive_model)

    # Timed runs take turns across encoders, so that a change of load on a shared machine
    # affects all of them alike instead of whichever ran then.
    for candidate in candidates:
        candidate.encode(texts[:_WARMUP_TEXTS])
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    for run_no in range(args.runs):
        for candidate in candidates:
            print(f"run {run_no + 1}/{args.runs}: {candidate.name} ...", file=sys.stderr, flush=True)
            _sync(device)
            started = clock()
            candidate.vectors = np.asarray(candidate.encode(texts))
            candidate.rates.append(len(texts) / (clock() - started))

    by_name = {c.name: c for c in candidates}
    reference = _normalised(by_name[baseline_name if baseline_name in by_name else naive_name].vectors)
    rows: list[Row] = []
    for candidate in candidates:
        print(f"latency: {candidate.name} ...", file=sys.stderr, flush=True)
        latencies, peak = _latency_pass(candidate.encode, texts, args.batch, device)
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
    # Release the models before the service (if any) loads its own.
    candidates.clear()
    by_name.clear()
    _free(device)

    service: dict[str, Any] | None = None
    if args.clients:
        env_model = model_path if model_arg else ""  # empty: the service loads the bundled model
        service = _measure_service(
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

    row_of = {row.name: row for row in rows}
    main = row_of[streamrank_name]
    baseline = row_of.get(baseline_name)
    summary: dict[str, Any] = {
        "items_per_s": round(main.items_per_s, 1),
        "baseline_items_per_s": round(baseline.items_per_s, 1) if baseline else None,
        "naive_items_per_s": round(row_of[naive_name].items_per_s, 1),
        "min_cosine": round(main.min_cosine or 0.0, 7),
        "mean_cosine": round(main.mean_cosine or 0.0, 7),
        "device": device,
        "model": model_label,
        "speedup_vs_baseline": round(main.items_per_s / baseline.items_per_s, 3) if baseline else None,
        "reference": "sentence-transformers fp32" if baseline else "naive loop fp32",
        "n": len(texts),
        "runs": args.runs,
        "clock": args.clock,
        "mean_tokens": round(tokens / len(texts), 2),
        "max_batch_tokens": budget,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": _machine(device),
        "date": datetime.date.today().isoformat(),
        "rows": [asdict(row) for row in rows],
    }
    int8 = row_of.get("streamrank (int8)")
    if int8 is not None:
        summary["int8_items_per_s"] = round(int8.items_per_s, 1)
        summary["int8_min_cosine"] = round(int8.min_cosine or 0.0, 7)
        summary["int8_mean_cosine"] = round(int8.mean_cosine or 0.0, 7)
    fp16 = row_of.get("sentence-transformers fp16")
    if fp16 is not None:
        summary["baseline_fp16_items_per_s"] = round(fp16.items_per_s, 1)
    if service is not None:
        summary["service_items_per_s"] = round(service["items_per_s"], 1)
        summary["service_clients"] = args.clients
    return {"rows": rows, "summary": summary}


def _latency_pass(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], batch: int, device: str
) -> tuple[list[float], float | None]:
    """Latency of each call of ``batch`` texts, and the peak memory growth during the calls."""
    _free(device)
    before = _memory_mib(device)
    _reset_peak(device)
    latencies = []
    for i in range(0, len(texts), batch):
        started = time.perf_counter()
        encode(texts[i : i + batch])
        latencies.append(time.perf_counter() - started)
    peak = _peak_mib(device)
    return latencies, None if peak is None else max(peak - before, 0.0)


def _naive_encoder(
    model_path: str, device: str, max_seq_length: int
) -> tuple[Callable[[list[str]], np.ndarray], Any]:
    """The loop most users would write: fixed batches in input order, fp32, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, dtype=torch.float32).to(device).eval()

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), _NAIVE_BATCH):
                batch = tokenizer(
                    texts[i : i + _NAIVE_BATCH],
                    padding=True,
                    truncation=True,
                    max_length=max_seq_length,
                    return_tensors="pt",
                ).to(device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=1).cpu())
        return torch.cat(out).numpy()

    return encode, model


def _random_bert_base(target: Path) -> str:
    """A randomly initialised BertModel (bert-base config) with the bundled tokenizer, on disk."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from encoders.config import bundled_model_path

    print("building a random bert-base model ...", file=sys.stderr, flush=True)
    torch.manual_seed(0)
    config = BertConfig()  # bert-base: 12 layers, hidden 768, 12 heads, vocabulary 30522
    BertModel(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(bundled_model_path()).save_pretrained(target)
    return str(target)


def _measure_service(
    model: str,
    device: str,
    budget: int,
    texts: list[str],
    clients: int,
    batch: int,
    enc_settings: Any,
    workdir: Path,
) -> dict[str, float]:
    """Items/s of ``streamrank encode-server`` under ``clients`` concurrent clients."""
    from stream.kafka.embedded import free_port
    from stream.tools.process import EncodeServerProcess

    env = {
        "STREAMRANK_ENCODER_MODEL": model,
        "STREAMRANK_ENCODER_DEVICE": device,
        "STREAMRANK_ENCODER_MAX_BATCH_TOKENS": str(budget),
        "STREAMRANK_ENCODER_CACHE_SIZE": "0",
        "STREAMRANK_ENCODER_MAX_SEQ_LENGTH": str(enc_settings.max_seq_length),
        "STREAMRANK_ENCODER_MAX_QUEUE_TEXTS": str(max(len(texts), enc_settings.max_queue_texts)),
    }
    print(f"measuring the service with {clients} clients ...", file=sys.stderr, flush=True)
    server = EncodeServerProcess(env, free_port(), workdir / "encode-server.log").start()
    try:
        server.wait_ready(timeout_s=600.0)
        per_request = max(1, min(batch, enc_settings.max_texts_per_request) // 4)
        return asyncio.run(_drive(server.url, texts, clients, per_request))
    finally:
        server.stop()


async def _drive(url: str, texts: list[str], clients: int, per_request: int) -> dict[str, float]:
    """Send every text once, in requests of ``per_request``, from ``clients`` concurrent clients."""
    import aiohttp

    requests = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    latencies: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def post(batch: list[str]) -> None:
            started = time.perf_counter()
            async with session.post(url + "/embed", json={"texts": batch, "encoding": "base64"}) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"/embed answered {response.status}: {body}")
                base64.b64decode(body["vectors"][0])
            latencies.append(time.perf_counter() - started)

        await post(texts[:_WARMUP_TEXTS])
        latencies.clear()
        queue = list(reversed(requests))

        async def client() -> None:
            while queue:
                await post(queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "items_per_s": len(texts) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)) * 1000,
        "p99_ms": float(np.percentile(latencies, 99)) * 1000,
    }


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def _weights_mib(module: Any) -> float:
    """Bytes of a model's weights and buffers (int8 packed weights included), in MiB."""
    import torch

    total = 0
    for value in module.state_dict().values():
        for tensor in value if isinstance(value, tuple) else (value,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total / 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _memory_mib(device: str) -> float:
    """Memory in use now: allocated on the GPU (CUDA), or the process's resident set (CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2**20
    return _proc_status_mib("VmRSS") or 0.0


def _reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        # Linux: writing 5 resets the process's peak resident set size (VmHWM).
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mib(device: str) -> float | None:
    """Peak memory since :func:`_reset_peak`: GPU allocations (CUDA) or resident set (CPU)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return _proc_status_mib("VmHWM")


def _proc_status_mib(field_name: str) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    return None


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _machine(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    cpus = os.cpu_count() or 0
    return f"{cpus} CPU {platform.machine()} ({platform.processor() or platform.system()})"


def _print_table(result: dict[str, Any]) -> None:
    summary = result["summary"]
    memory = "GPU MiB" if summary["device"] == "cuda" else "RSS MiB"
    print(
        f"\nencoder benchmark: {summary['model']} on {summary['device']} ({summary['machine']}), "
        f"{summary['n']} MovieLens item texts, {summary['mean_tokens']} tokens on average, "
        f"torch {summary['torch']} with {summary['torch_threads']} threads, "
        f"streamrank max_batch_tokens {summary['max_batch_tokens']}; items/s by {summary['clock']} time; "
        f"agreement vs {summary['reference']}"
    )
    header = ["encoder", "items/s", "tokens/s", "p50 ms", "p99 ms", memory, "min cos", "mean cos"]
    lines = [header]
    for row in result["rows"]:
        lines.append(
            [
                row.name,
                f"{row.items_per_s:,.0f}",
                f"{row.tokens_per_s:,.0f}",
                f"{row.p50_ms:.1f}",
                f"{row.p99_ms:.1f}",
                "-" if row.peak_mib is None else f"{row.peak_mib:,.0f}",
                "-" if row.min_cosine is None else f"{row.min_cosine:.5f}",
                "-" if row.mean_cosine is None else f"{row.mean_cosine:.5f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        numbers = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        cells = [line[0].ljust(widths[0]), *numbers]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if summary.get("speedup_vs_baseline"):
        print(f"streamrank vs sentence-transformers default: {summary['speedup_vs_baseline']:.2f}x")
    if "int8_items_per_s" in summary and summary.get("baseline_items_per_s"):
        ratio = summary["int8_items_per_s"] / summary["baseline_items_per_s"]
        print(f"streamrank int8 vs sentence-transformers default: {ratio:.2f}x")
    if "service_items_per_s" in summary:
        ratio = summary["service_items_per_s"] / summary["items_per_s"]
        print(f"service ({summary['service_clients']} clients) vs in-process: {ratio:.2f}x")
