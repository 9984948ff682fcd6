"""The catalog indexes of every model in use, and which one scoring reads.

A :class:`~stream.core.catalog.CatalogIndex` holds the vectors of one model. While the
configured model replaces another, :class:`ModelCatalog` holds one index per model found
in the catalog and names the one scoring reads: the old model's until every live item has
a vector of the new one, then the new one, swapped in one assignment. One ranking reads one
index, so it never mixes models. Pure Python and numpy: no Faust, no Kafka, no I/O.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from stream.core.catalog import DEFAULT_SIMILARITY_CACHE_BYTES, CatalogIndex, SimilarityPrecision
from stream.core.covisit import CovisitRow


class ModelCatalog:
    """The catalog indexes of the configured model (``target``) and of older models still in use.

    Each item's latest catalog entry carries the vector of one model. The target index takes
    that vector when it is of the configured model and otherwise forgets the item's vector, so
    the item shows up in :meth:`missing` and is re-encoded. An index of another model keeps the
    vector it had, so scoring on it does not degrade while items are re-encoded.

    Scoring reads :attr:`active`: chosen when first read (after table recovery) as the index
    that covers most live items, preferring the target; then it moves to the target only when
    the target covers every live item (:meth:`try_switch`), and older indexes are dropped.
    """

    def __init__(
        self,
        model_id: str,
        dim: int,
        similarity_cache_bytes: int = DEFAULT_SIMILARITY_CACHE_BYTES,
        similarity_precision: SimilarityPrecision = "float32",
    ) -> None:
        self._covisits: dict[str, CovisitRow | bytes] = {}
        # Every index (the target's and other models') shares the statistics and the settings.
        self._new_index = functools.partial(
            CatalogIndex,
            covisits=self._covisits,
            similarity_cache_bytes=similarity_cache_bytes,
            similarity_precision=similarity_precision,
        )
        self.target = self._new_index(model_id, dim)
        self._others: dict[str, CatalogIndex] = {}
        self._active: CatalogIndex | None = None
        self._live: set[str] = set()
        self._unreported_switch = False

    @property
    def model_id(self) -> str:
        """The configured model's id."""
        return self.target.model_id

    @property
    def active(self) -> CatalogIndex:
        """The index scoring reads now. Read it once per ranking."""
        if self._active is None:
            self._active = self._choose()
        return self._active

    def current(self) -> CatalogIndex:
        """The scoring index if chosen, else the target; reading it chooses nothing (metrics)."""
        return self._active if self._active is not None else self.target

    def indexes(self) -> list[CatalogIndex]:
        """Every index held (the target first)."""
        return [self.target, *self._others.values()]

    def _choose(self) -> CatalogIndex:
        best = self.target
        for index in self._others.values():
            if index.active_count > best.active_count:
                best = index
        if best is self.target:
            # Re-encoding already covered the recovered vectors of an older model: scoring
            # starts on the configured one, which is a switch away from what the table held.
            self._unreported_switch = bool(self._others)
            self._others.clear()  # nothing will ever read them
        return best

    def apply_entry(self, item_id: str, entry: dict[str, Any] | None, vector: np.ndarray | None) -> None:
        """Apply one ``item-catalog`` value (already decoded ``vector``) to every index."""
        if entry is None or entry.get("deleted"):
            self._live.discard(item_id)
            for index in self.indexes():
                index.delete(item_id)
            return
        self._live.add(item_id)
        model_id = str(entry.get("model_id") or "")
        ts = entry.get("ts")
        self.target.upsert(item_id, vector, model_id, ts)
        keeps_others = self._active is not self.target  # undecided, or still on an old model
        if keeps_others and vector is not None and model_id not in (self.target.model_id, *self._others):
            self._others[model_id] = self._new_index(model_id, int(vector.shape[0]))
        for other_id, index in self._others.items():
            if other_id == model_id:
                index.upsert(item_id, vector, model_id, ts)
            else:
                index.touch(item_id, ts)

    def set_popularity(self, item_id: str, score: float, ref_ts: float) -> None:
        """Set an item's decayed popularity in every index."""
        for index in self.indexes():
            index.set_popularity(item_id, score, ref_ts)

    def set_covisits(self, item_id: str, row: CovisitRow | bytes | None) -> None:
        """Set an item's co-visitation row (shared by every index)."""
        for index in self.indexes():
            index.set_covisits(item_id, row)

    def missing(self) -> list[str]:
        """Live catalog items without a vector of the configured model."""
        # Every live item has a target vector in steady state: one count over the index's
        # flags instead of a lookup per item (the re-encoder asks every round).
        if self.target.active_count == len(self._live):
            return []
        lookup = self.target.vector_of
        return [item_id for item_id in self._live if lookup(item_id) is None]

    def try_switch(self) -> bool:
        """Move scoring to the configured model once it covers every live item.

        Returns:
            True when scoring moved to the configured model since the last call: here, or
            when first chosen while the recovered catalog still held another model's vectors.
        """
        if self.active is not self.target and not self.missing():
            self._active = self.target  # one assignment: the next ranking reads the new model
            self._others.clear()
            self._unreported_switch = True
        switched, self._unreported_switch = self._unreported_switch, False
        return switched
