"""Background re-encoding of the catalog with the configured model.

After the configured model changes, the ``item-catalog`` table still holds vectors of the old
one; items stored without a vector (deferred while the encoder service was down) have none.
Every ``reencode_interval_s`` each worker re-encodes, ``item_batch_size`` at a time, the live
items of its ``items`` partitions that lack a vector of the configured model, from the text kept
in their catalog entry, and writes the new entries. Scoring keeps reading the old model's index
meanwhile; once every live item has a vector of the configured model, scoring moves to it in
one assignment (:meth:`stream.core.model_catalog.ModelCatalog.try_switch`).

Which items are a worker's follows the consumer's actual assignment of ``items`` and the
partition each item's upsert arrived on, recorded in its catalog entry: the producers'
partitioner chose it (librdkafka's default is not Kafka's murmur2), so it cannot be
recomputed from the id. The writer of an item is thus always the worker whose
``embed_new_items`` receives its updates, and two workers never write the same item.
Entries stored without a partition fall back to murmur2 of the id (:func:`item_partition`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faust.exceptions import ConsumerNotStarted

from stream.kafka.partitioner import owner_partition
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.agents.items import catalog_entry
from stream.pipeline.tables import apply_catalog_entry

if TYPE_CHECKING:
    import faust
    from faust.types import TableT

log = logging.getLogger(__name__)


def item_partition(entry: dict[str, Any] | None, item_id: str, partitions: int) -> int:
    """The ``items`` partition an item's upserts arrive on.

    The one recorded in its catalog entry; for entries stored before it was recorded, the
    one Kafka's default partitioner (murmur2) gives the id, right for Java-compatible
    producers and, with a single worker holding every partition, for any.
    """
    recorded = None if entry is None else entry.get("partition")
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0:
        return recorded
    return owner_partition(item_id, partitions)


def owns_item(entry: dict[str, Any] | None, item_id: str, assigned: frozenset[int], partitions: int) -> bool:
    """Whether a worker assigned the ``items`` partitions ``assigned`` is the item's writer."""
    return item_partition(entry, item_id, partitions) in assigned


class AssignedItems:
    """Ownership of items under the app's ``items`` assignment as it is when made.

    Called per item; says no to every item once the assignment may have changed (a
    rebalance started, or ended with a new consumer generation): a round that awaited the
    encoder across a rebalance does not write items that another worker may now own.
    """

    def __init__(self, app: faust.App, items_topic: str, partitions: int, item_catalog: TableT) -> None:
        self._app = app
        self._catalog = item_catalog
        self._partitions = partitions
        self._generation = app.consumer_generation_id
        self.assigned = assigned_partitions(app, items_topic)

    def current(self) -> bool:
        """Whether the assignment this was made with still holds."""
        return not self._app.rebalancing and self._app.consumer_generation_id == self._generation

    def __call__(self, item_id: str) -> bool:
        """Whether this worker writes ``item_id`` now."""
        if not self.current():
            return False
        return owns_item(self._catalog.get(item_id), item_id, self.assigned, self._partitions)


def assigned_partitions(app: faust.App, topic: str) -> frozenset[int]:
    """The partitions of ``topic`` the app's consumer holds now; none during a rebalance."""
    if app.rebalancing:
        return frozenset()
    try:
        assignment = app.consumer.assignment()
    except ConsumerNotStarted:
        return frozenset()
    return frozenset(tp.partition for tp in assignment if tp.topic == topic)


async def reencode_round(ctx: Pipeline, owns: Callable[[str], bool]) -> int:
    """Re-encode the missing items this worker owns; switch scoring once none is missing.

    Args:
        ctx: The pipeline.
        owns: Whether this worker writes the item (holds its ``items`` partition); asked
            again before each write, since the assignment may change while encoding.

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
            if not owns(item_id):
                continue  # reassigned while encoding: the new owner re-encodes it
            new = catalog_entry(
                text, entry.get("title", ""), entry.get("ts"), vector, ctx.embedder, entry.get("partition")
            )
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

    @app.task
    async def reencode_catalog() -> None:
        # Runs after table recovery (app.task), so the catalog is complete when first read.
        while True:
            try:
                # The writer of an item is the holder of its items partition, as for
                # embed_new_items, so two workers never write the same item.
                owns = AssignedItems(
                    app, settings.items_topic, settings.topic_partitions, ctx.tables.item_catalog
                )
                await reencode_round(ctx, owns)
            except Exception:
                log.exception("re-encoding round failed; retrying in %.0fs", settings.reencode_interval_s)
            await asyncio.sleep(settings.reencode_interval_s)
