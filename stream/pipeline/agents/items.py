"""``embed_new_items``: item upserts and deletes -> encoded vectors in ``item-catalog``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from faust.types import StreamT

from stream.core.contracts import ItemDelete, ItemUpsert, decode_item
from stream.core.profiles import encode_vector
from stream.encoding.embedder import ItemEmbedder
from stream.pipeline.agents.context import Pipeline, decode_batch
from stream.pipeline.tables import apply_catalog_entry


async def embed_new_items(ctx: Pipeline, stream: StreamT) -> None:
    """Batch the items, encode the upserts off the event loop, publish their entries.

    The last message for an item in a batch wins. Without a vector (the encoder service
    deferred it), an entry waits for the background re-encoder.
    """
    settings, tables, metrics = ctx.settings, ctx.tables, ctx.metrics
    async for events in stream.take_events(settings.item_batch_size, within=settings.item_batch_window_s):
        started = time.perf_counter()
        good = await decode_batch(ctx, events, lambda raw: decode_item(raw, settings.max_text_chars))
        latest: dict[str, ItemUpsert | ItemDelete] = {record.item_id: record for record, _ in good}
        upserts = [r for r in latest.values() if isinstance(r, ItemUpsert)]
        for record in latest.values():
            if isinstance(record, ItemDelete):
                tables.item_catalog[record.item_id] = {"deleted": True}
                apply_catalog_entry(ctx.catalog, record.item_id, {"deleted": True})
                metrics.items_deleted.inc()
        if upserts:
            texts = [r.encoder_text() for r in upserts]
            vectors = await ctx.embedder.embed(texts)
            for i, (record, text) in enumerate(zip(upserts, texts, strict=True)):
                vector = None if vectors is None else vectors[i]
                entry = catalog_entry(text, record.title, record.ts, vector, ctx.embedder)
                tables.item_catalog[record.item_id] = entry
                apply_catalog_entry(ctx.catalog, record.item_id, entry)
            if vectors is not None:
                metrics.items_encoded.inc(len(upserts))
        metrics.batch_size.labels("embed_new_items").observe(len(events))
        metrics.batch_processing.labels("embed_new_items").observe(time.perf_counter() - started)


def catalog_entry(
    text: str, title: str, ts: float | None, vector: np.ndarray | None, embedder: ItemEmbedder
) -> dict[str, Any]:
    """The ``item-catalog`` value of an item: its vector (if any) tagged with its model, and
    the text it was encoded from, so that another model can re-encode it."""
    entry: dict[str, Any] = {"text": text, "title": title, "ts": ts}
    if vector is None:
        entry["model_id"] = ""
    else:
        entry["vector"] = encode_vector(vector)
        entry["model_id"] = embedder.model_id
    return entry
