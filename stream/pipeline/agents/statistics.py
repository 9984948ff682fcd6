"""``count_item_popularity``: each item owner's statistics window.

The owner of an item's partition of ``item-interactions`` merges a window of the
events agents' messages (``core.window.StatisticsWindow``, the merge the offline
evaluation runs too) and writes each touched entry once to ``item-popularity`` and
``item-covisits``, so a busy item is written, and replayed by every worker, once per
window. Offsets are committed only after the window is written: nothing is lost on a
crash, and what is read again is recognised (``core.window``): nothing counts twice.

An owner writes to its own partition of the tables' changelogs and reads its own
writes until the changelogs bring them back (``positions.OwnerPartitionTable``). One that
takes a partition over reloads the partition's merged positions from its copy of the
tables, which Faust's recovery brought to the changelogs' end before delivering messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from faust.types import StreamT

from stream.core.formats import IncrementsMessage, decode_message
from stream.core.window import MessagePosition, StatisticsWindow
from stream.errors import InvalidMessage
from stream.pipeline.agents.context import Pipeline, send_dead_letter
from stream.pipeline.positions import OwnerPartitionTable, owner_key

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import faust

# Table writes of a statistics window made between two waits for the changelogs to
# drain, and how many may still be waiting when the next chunk starts.
_WRITE_CHUNK = 25
_DRAINED = 10


async def count_item_popularity(ctx: Pipeline, app: faust.App, stream: StreamT) -> None:
    """Merge each window of messages, then write its entries in chunks."""
    settings, tables, metrics = ctx.settings, ctx.tables, ctx.metrics
    partitions = settings.topic_partitions
    window = StatisticsWindow(
        OwnerPartitionTable(tables.item_popularity, partitions, tables.own_writes["item-popularity"]),
        OwnerPartitionTable(tables.item_covisits, partitions, tables.own_writes["item-covisits"]),
        settings.popularity_half_life_s,
        ctx.covisit_params,
        merged_key=lambda owner: owner_key("merged", owner),
    )
    async for events in stream.take_events(
        settings.statistics_batch_size, within=settings.statistics_batch_window_s
    ):
        started = time.perf_counter()
        skipped = window.skipped
        tables.own_writes["item-popularity"].settle(tables.item_popularity)
        tables.own_writes["item-covisits"].settle(tables.item_covisits)
        # Decoded one at a time between turns of the loop, not up front: a window holds
        # hundreds of messages of thousands of entries.
        for event in events:
            owner = event.message.partition
            if owner not in ctx.owned:  # taken since the last rebalance: reload its positions
                window.forget(owner)
                ctx.owned.add(owner)
            try:
                message = _decode_increments(event.message.value)
            except InvalidMessage as exc:
                await send_dead_letter(ctx, event, exc)
                continue
            window.merge(message, MessagePosition(owner, event.message.offset))
            await asyncio.sleep(0)
        metrics.replayed_statistics.inc(window.skipped - skipped)
        if window.overlaps:
            log.error("%d statistics messages overlapped a merged range", window.overlaps)
            window.overlaps = 0
        for count, _ in enumerate(window.write(ctx.catalog), start=1):
            if count % _WRITE_CHUNK == 0:
                await _changelogs_drained(app)
        metrics.batch_size.labels("count_item_popularity").observe(len(events))
        metrics.batch_processing.labels("count_item_popularity").observe(time.perf_counter() - started)


def _decode_increments(raw: bytes | None) -> IncrementsMessage:
    try:
        return decode_message(raw or b"")
    except ValueError as exc:  # from our own workers: a defect, or a version that cannot be read
        raise InvalidMessage("undecodable", f"item-interactions message: {exc}") from exc


async def _changelogs_drained(app: faust.App) -> None:
    """Wait until at most ``_DRAINED`` table writes are waiting to be produced.

    Faust's conductor stops delivering every message to every agent while more than 100
    table writes wait in its producer buffer. A statistics window writes thousands of
    entries at once; written in chunks that fill at most a third of the buffer, they
    leave room for the events agent's profile writes, and its lists flowing.
    """
    buffer = app.producer.buffer
    while buffer.size > _DRAINED:
        await asyncio.sleep(0.001)
