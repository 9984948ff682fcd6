"""``embed_new_items``: item upserts and deletes -> encoded vectors in ``item-catalog``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from faust.types import EventT, StreamT

from stream.core.contracts import ItemDelete, ItemUpsert, decode_item
from stream.core.profiles import encode_vector
from stream.encoding.embedder import ItemEmbedder
from stream.pipeline.agents.context import Pipeline, decode_batch, process_bisecting
from stream.pipeline.tables import apply_catalog_entry


async def embed_new_items(ctx: Pipeline, stream: StreamT) -> None:
    """Batch the items, encode the upserts off the event loop, publish their entries.

    Malformed messages are dead-lettered first; a message whose storing raises is then
    dead-lettered alone (``process_bisecting``), and the rest of its batch is stored.
    """
    settings, metrics = ctx.settings, ctx.metrics
    async for events in stream.take_events(settings.item_batch_size, within=settings.item_batch_window_s):
        started = time.perf_counter()
        good = await decode_batch(ctx, events, lambda raw: decode_item(raw, settings.max_text_chars))
        await process_bisecting(ctx, good, lambda batch: store_items(ctx, batch))
        metrics.batch_size.labels("embed_new_items").observe(len(events))
        metrics.batch_processing.labels("embed_new_items").observe(time.perf_counter() - started)


async def store_items(ctx: Pipeline, batch: list[tuple[ItemUpsert | ItemDelete, EventT]]) -> None:
    """Write the catalog entries of decoded items: deletions, and upserts with their vectors
    (one encoder call). The last message for an item wins. Without a vector (the encoder
    service deferred it), an entry waits for the background re-encoder.
    """
    tables, metrics = ctx.tables, ctx.metrics
    latest = {record.item_id: (record, event) for record, event in batch}
    upserts: list[tuple[ItemUpsert, EventT]] = []
    for record, event in latest.values():
        if isinstance(record, ItemDelete):
            tables.item_catalog[record.item_id] = {"deleted": True}
            apply_catalog_entry(ctx.catalog, record.item_id, {"deleted": True})
            metrics.items_deleted.inc()
        else:
            upserts.append((record, event))
    if not upserts:
        return
    texts = [record.encoder_text() for record, _ in upserts]
    vectors = await ctx.embedder.embed(texts)
    for i, ((record, event), text) in enumerate(zip(upserts, texts, strict=True)):
        vector = None if vectors is None else vectors[i]
        entry = catalog_entry(text, record.title, record.ts, vector, ctx.embedder, event.message.partition)
        tables.item_catalog[record.item_id] = entry
        apply_catalog_entry(ctx.catalog, record.item_id, entry)
    if vectors is not None:
        metrics.items_encoded.inc(len(upserts))


def catalog_entry(
    text: str,
    title: str,
    ts: float | None,
    vector: np.ndarray | None,
    embedder: ItemEmbedder,
    partition: int | None = None,
) -> dict[str, Any]:
    """The ``item-catalog`` value of an item: its vector (if any) tagged with its model, and
    the text it was encoded from, so that another model can re-encode it.

    Args:
        partition: The item's partition of the ``items`` topic (where its upsert arrived).
            The worker assigned that partition is the item's only writer, the re-encoder
            included (``stream.pipeline.reencode``); recorded here because the producers'
            partitioner, not a hash streamrank could compute, chose it.
    """
    entry: dict[str, Any] = {"text": text, "title": title, "ts": ts}
    if partition is not None:
        entry["partition"] = partition
    if vector is None:
        entry["model_id"] = ""
    else:
        entry["vector"] = encode_vector(vector)
        entry["model_id"] = embedder.model_id
    return entry
