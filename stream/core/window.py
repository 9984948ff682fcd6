"""An item owner's statistics window: the one merge of ``item-interactions`` messages.

Each item's popularity and co-visitation row are written by one owner, the worker that
holds the item's partition of ``item-interactions``. The owner merges a window of
messages into the stored entries and writes each entry it touched once, so a busy item
is written (and replayed by every worker) once per window, not once per event. The
workers' statistics agent, the offline evaluation and the batch benchmark all merge
through :class:`StatisticsWindow`. Pure: no Faust, no Kafka.

Replays are recognised, so that each event counts once however often its message is
read or sent (docs/reliability.md):

- an owner that crashed reads again the messages after its last commit: each stored
  entry records the offset of the last message merged into it (its ``position``), and a
  message at or before it is skipped for that entry;
- a sender that crashed sends again the statistics of the events it had not recorded as
  applied: each message names its events (``formats.SourceRange``), each owner partition
  stores, per events partition, the newest range it merged (``position_records.MergedSources``,
  under a key of the caller's choosing in each table, written after the table's entries),
  and a range already merged is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import NamedTuple, Protocol

from stream.core import covisit, popularity, position_records
from stream.core.covisit import CovisitParams, CovisitRow
from stream.core.formats import IncrementsMessage


class MessagePosition(NamedTuple):
    """Where an ``item-interactions`` message was read: its owner partition and offset."""

    partition: int
    offset: int


class StatisticsSink(Protocol):
    """What replays written statistics: a worker's ``ModelCatalog`` or a ``CatalogIndex``."""

    def set_popularity(self, item_id: str, score: float, ref_ts: float) -> None:
        """Hold the item's decayed count ``score`` at ``ref_ts``."""

    def set_covisits(self, item_id: str, row: bytes | None) -> None:
        """Hold the item's published co-visitation row (stored form)."""


class StatisticsWindow:
    """Messages merged into the stored statistics, each touched entry written once.

    ``popularity_table`` and ``covisit_table`` hold the stored forms, as the
    ``item-popularity`` and ``item-covisits`` tables do; an entry the window has not
    touched yet starts from its stored value.
    """

    def __init__(
        self,
        popularity_table: MutableMapping[str, bytes],
        covisit_table: MutableMapping[str, bytes],
        popularity_half_life_s: float,
        covisit_params: CovisitParams,
        merged_key: Callable[[int], str] | None = None,
    ) -> None:
        """Args:
        merged_key: the key, in each table, of an owner partition's merged positions
            (None: messages are not recognised by their source, as offline).
        """
        self.popularity_table = popularity_table
        self.covisit_table = covisit_table
        self.popularity_half_life_s = popularity_half_life_s
        self.covisit_params = covisit_params
        self.merged_key = merged_key
        self.popularity: dict[str, tuple[float, float, int]] = {}  # (score, held at, position)
        self.rows: dict[str, CovisitRow] = {}
        # Per table, owner partition and events partition: the newest range merged.
        self.merged: tuple[dict[int, dict[int, int]], dict[int, dict[int, int]]] = ({}, {})
        self._touched: set[int] = set()  # owner partitions whose merged positions changed
        self.skipped = 0  # messages (or a table's part of one) recognised as merged already
        self.overlaps = 0  # messages that overlap a merged range: a defect, merged anyway

    def __len__(self) -> int:
        return len(self.popularity) + len(self.rows)

    def forget(self, owner: int) -> None:
        """Drop what is held of an owner partition's merged positions (it was revoked:
        another worker may merge into it before it comes back)."""
        for merged in self.merged:
            merged.pop(owner, None)

    def merge(self, message: IncrementsMessage, position: MessagePosition | None = None) -> None:
        """Add one message's sums to the window's entries.

        Args:
            position: where the message was read (None: it is not recognised as replayed).
        """
        offset = -1 if position is None else position.offset
        if self._is_new(0, message, position):
            half_life, merged, stored = self.popularity_half_life_s, self.popularity, self._stored_popularity
            for item_id, add_score, add_ts in message.popularity_entries():
                score, ref_ts, at = merged.get(item_id) or stored(item_id)
                if position is not None and offset <= at:
                    continue  # merged into this entry before a crash of its owner
                merged[item_id] = (*popularity.merge(score, ref_ts, add_score, add_ts, half_life), offset)
        if self._is_new(1, message, position):
            rows, params = self.rows, self.covisit_params
            for row_id, neighbours, weights, ts in message.covisit_slices():
                row = rows.get(row_id) or covisit.stored_row(self.covisit_table.get(row_id))
                if position is not None and row is not None and offset <= row.position:
                    continue
                row = covisit.merge_row_entries(row, neighbours, weights, ts, params)
                row.position = offset
                rows[row_id] = row

    def _is_new(self, table: int, message: IncrementsMessage, position: MessagePosition | None) -> bool:
        """Whether a table has not merged the message's source range yet (and note it as merged)."""
        source = message.source
        if source is None or position is None or self.merged_key is None:
            return True
        merged = self.merged[table].get(position.partition)
        if merged is None:
            table_of = (self.popularity_table, self.covisit_table)[table]
            stored = table_of.get(self.merged_key(position.partition))
            merged = {} if stored is None else position_records.decode_merged(stored)
            self.merged[table][position.partition] = merged
        through = merged.get(source.partition, -1)
        if source.through <= through:
            self.skipped += 1
            return False
        if source.after < through:
            self.overlaps += 1
        merged[source.partition] = source.through
        self._touched.add(position.partition)
        return True

    def write(self, sink: StatisticsSink) -> Iterator[tuple[bool, str, bytes]]:
        """Write every touched entry to the tables and to ``sink``, then start afresh.

        Yields ``(is a co-visitation row, key, value stored)`` after each write, so that
        the owner can pause between writes. Rows are cut to ``max_neighbours`` as
        published, and the next window starts from the cut row, as every worker does.
        Each table's merged positions are written after its entries: whoever reads them
        from the table's changelog has read every entry they account for.
        """
        popularity_table, covisit_table = self.popularity_table, self.covisit_table
        for item_id, (score, ref_ts, position) in self.popularity.items():
            entry = popularity_table[item_id] = popularity.encode_entry(score, ref_ts, position)
            sink.set_popularity(item_id, score, ref_ts)
            yield False, item_id, entry
        self._write_merged(0)
        max_neighbours = self.covisit_params.max_neighbours
        for row_id, row in self.rows.items():
            entry = covisit_table[row_id] = covisit.published_bytes(row, max_neighbours)
            sink.set_covisits(row_id, entry)  # decoded if a ranking reads it, as replayed rows
            yield True, row_id, entry
        self._write_merged(1)
        self.popularity, self.rows = {}, {}
        self._touched = set()

    def _write_merged(self, table: int) -> None:
        if self.merged_key is None:
            return
        stored = (self.popularity_table, self.covisit_table)[table]
        for owner in sorted(self._touched):
            merged = self.merged[table].get(owner)
            if merged is not None:
                stored[self.merged_key(owner)] = position_records.encode_merged(merged)

    def _stored_popularity(self, item_id: str) -> tuple[float, float, int]:
        return popularity.stored_entry(self.popularity_table.get(item_id))
