"""What ``streamrank bench encoder`` measures streamrank's encoder against.

A naive transformers loop (what most users would write), the encoder service driven by
concurrent HTTP clients, and a randomly initialised bert-base model for runs at that size.
Torch, transformers and aiohttp are imported inside functions.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# sentence-transformers' own default batch size, used by the naive loop as well.
_NAIVE_BATCH = 32
# Texts sent once to the service before its clock starts.
_WARMUP_TEXTS = 64


def naive_encoder(
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


def random_bert_base(target: Path) -> str:
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


def measure_service(
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
