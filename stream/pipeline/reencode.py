"""Background re-encoding of the catalog with the configured model.

After the configured model changes, the ``item-catalog`` table still holds vectors of the old
one; items stored without a vector (deferred while the encoder service was down) have none.
Every ``reencode_interval_s`` each worker re-encodes, ``item_batch_size`` at a time, the live
items of its ``items`` partitions that lack a vector of the configured model, from the text kept
in their catalog entry, and writes the new entries. Scoring keeps reading the old model's index
meanwhile; once every live item has a vector of the configured model, scoring moves to it in
one assignment (:meth:`stream.core.model_catalog.ModelCatalog.try_switch`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stream.kafka.partitioner import owner_partition
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.agents.items import catalog_entry
from stream.pipeline.tables import apply_catalog_entry

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


async def reencode_round(ctx: Pipeline, owns: Callable[[str], bool]) -> int:
    """Re-encode the missing items this worker owns; switch scoring once none is missing.

    Args:
        ctx: The pipeline.
        owns: Whether this worker writes the item (owns its ``items`` partition).

    Returns:
        Items re-encoded in this round.
    """
    catalog, tables, metrics = ctx.catalog, ctx.tables, ctx.metrics
    missing = catalog.missing()
    metrics.reencode_pending.set(len(missing))
    done = 0
    mine = [item_id for item_id in missing if owns(item_id)]
    batch_size = ctx.settings.item_batch_size
    for start in range(0, len(mine), batch_size):
        chunk: list[tuple[str, dict[str, Any]]] = []
        for item_id in mine[start : start + batch_size]:
            entry = tables.item_catalog.get(item_id)
            if entry and not entry.get("deleted"):
                chunk.append((item_id, entry))
        if not chunk:
            continue
        # Entries written before texts were stored carry only a title.
        texts = [str(entry.get("text") or entry.get("title") or "") for _, entry in chunk]
        vectors = await ctx.embedder.embed(texts)
        if vectors is None:
            break  # deferred: the encoder is unavailable; the next round retries
        for (item_id, entry), text, vector in zip(chunk, texts, vectors, strict=True):
            if tables.item_catalog.get(item_id) != entry:
                continue  # changed while encoding: the newer entry stands
            new = catalog_entry(text, entry.get("title", ""), entry.get("ts"), vector, ctx.embedder)
            tables.item_catalog[item_id] = new
            apply_catalog_entry(catalog, item_id, new)
            metrics.items_reencoded.inc()
            done += 1
    still_missing = len(catalog.missing())
    metrics.reencode_pending.set(still_missing)
    if catalog.try_switch():
        metrics.model_switches.inc()
        log.info("scoring moved to model %s", catalog.model_id)
    metrics.scoring_model.info({"model_id": catalog.active.model_id})
    if done or still_missing:
        log.info("re-encoded %d items with %s; %d still missing", done, catalog.model_id, still_missing)
    return done


def register_reencoder(app: faust.App, ctx: Pipeline) -> None:
    """Run :func:`reencode_round` every ``reencode_interval_s`` once the worker has started."""
    settings = ctx.settings

    def owner_filter() -> Callable[[str], bool]:
        # The writer of an item is the owner of its items partition, as for embed_new_items,
        # so two workers never write the same item.
        assigned = {
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.items_topic
        }
        partitions = settings.topic_partitions
        return lambda item_id: owner_partition(item_id, partitions) in assigned

    @app.task
    async def reencode_catalog() -> None:
        # Runs after table recovery (app.task), so the catalog is complete when first read.
        while True:
            try:
                await reencode_round(ctx, owner_filter())
            except Exception:
                log.exception("re-encoding round failed; retrying in %.0fs", settings.reencode_interval_s)
            await asyncio.sleep(settings.reencode_interval_s)
