"""An item owner's statistics window: the one merge of ``item-interactions`` messages.

Each item's popularity and co-visitation row are written by one owner, the worker that
holds the item's partition of ``item-interactions``. The owner merges a window of
messages into the stored entries and writes each entry it touched once, so a busy item
is written (and replayed by every worker) once per window, not once per event. The
workers' statistics agent, the offline evaluation and the batch benchmark all merge
through :class:`StatisticsWindow`. Pure: no Faust, no Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Protocol

from stream.core import covisit, popularity
from stream.core.covisit import CovisitParams, CovisitRow
from stream.core.formats import IncrementsMessage


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
    ) -> None:
        self.popularity_table = popularity_table
        self.covisit_table = covisit_table
        self.popularity_half_life_s = popularity_half_life_s
        self.covisit_params = covisit_params
        self.popularity: dict[str, tuple[float, float]] = {}  # (score, held at)
        self.rows: dict[str, CovisitRow] = {}

    def __len__(self) -> int:
        return len(self.popularity) + len(self.rows)

    def merge(self, message: IncrementsMessage) -> None:
        """Add one message's sums to the window's entries."""
        half_life, merged, stored = self.popularity_half_life_s, self.popularity, self._stored_popularity
        for item_id, add_score, add_ts in message.popularity_entries():
            score, ref_ts = merged.get(item_id) or stored(item_id)
            merged[item_id] = popularity.merge(score, ref_ts, add_score, add_ts, half_life)
        rows, params = self.rows, self.covisit_params
        for row_id, neighbours, weights, ts in message.covisit_slices():
            row = rows.get(row_id) or covisit.stored_row(self.covisit_table.get(row_id))
            rows[row_id] = covisit.merge_row_entries(row, neighbours, weights, ts, params)

    def write(self, sink: StatisticsSink) -> Iterator[tuple[bool, str, bytes]]:
        """Write every touched entry to the tables and to ``sink``, then start afresh.

        Yields ``(is a co-visitation row, key, value stored)`` after each write, so that
        the owner can pause between writes. Rows are cut to ``max_neighbours`` as
        published, and the next window starts from the cut row, as every worker does.
        """
        popularity_table, covisit_table = self.popularity_table, self.covisit_table
        for item_id, (score, ref_ts) in self.popularity.items():
            entry = popularity_table[item_id] = popularity.encode_entry(score, ref_ts)
            sink.set_popularity(item_id, score, ref_ts)
            yield False, item_id, entry
        max_neighbours = self.covisit_params.max_neighbours
        for row_id, row in self.rows.items():
            entry = covisit_table[row_id] = covisit.published_bytes(row, max_neighbours)
            sink.set_covisits(row_id, entry)  # decoded if a ranking reads it, as replayed rows
            yield True, row_id, entry
        self.popularity, self.rows = {}, {}

    def _stored_popularity(self, item_id: str) -> tuple[float, float]:
        return popularity.decode_entry(self.popularity_table.get(item_id))
