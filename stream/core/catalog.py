"""In-memory, vectorised index of the catalog, derived from the catalog tables.

Every worker holds the whole catalog for scoring. The source of truth is two global
Faust tables (``item-catalog`` with vectors, ``item-popularity`` with decayed counts);
their changelog events are applied here so that ranking reads contiguous numpy arrays
instead of iterating a table. The index is a cache: it is rebuilt from the changelogs
at start and never written back.

A :class:`CatalogIndex` holds the vectors of one model; ``stream.core.model_catalog`` holds
one per model in use and names the one scoring reads. No Faust, no Kafka, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from stream.core.covisit import CovisitRow
from stream.core.formats import row_arrays
from stream.core.profiles import UserProfile
from stream.core.signals import interest_direction, time_groups
from stream.core.similarity import Int8Catalog, int8_supported, similarity_product
from stream.core.views import CatalogView, UserView

_INITIAL_CAPACITY = 1024
DEFAULT_SIMILARITY_CACHE_BYTES = 64 << 20

SimilarityPrecision = Literal["float32", "int8"]


class CatalogIndex:
    """Rows of item vectors, lifecycle flags and popularity, addressed by item id.

    Only vectors produced by ``model_id`` are held: one ranking never mixes models.
    """

    def __init__(
        self,
        model_id: str,
        dim: int,
        covisits: dict[str, CovisitRow | bytes] | None = None,
        similarity_cache_bytes: int = DEFAULT_SIMILARITY_CACHE_BYTES,
        similarity_precision: SimilarityPrecision = "float32",
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        # The catalog in int8 for the batch products of similarity rows (see stream.core.similarity).
        self._int8 = Int8Catalog() if similarity_precision == "int8" and int8_supported() else None
        # Cosine of a recent item to every catalog row, kept across users and batches: the
        # same popular items recur in many histories, and each row costs a pass over the
        # whole vector matrix. Rows cover the catalog as it was when computed and are
        # extended when items are appended; any change to an existing vector clears them.
        self._similarity_rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._similarity_cache_bytes = similarity_cache_bytes
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((_INITIAL_CAPACITY, dim), dtype=np.float32)
        # The same vectors as columns, for the products with a batch's few query vectors:
        # BLAS reads this layout about twice as fast for a handful of queries (measured on
        # the MovieLens catalog, 2 to 6 queries: 5.3-5.6 ms against 2.7-3.2 ms), and those
        # products are the largest share of a worker's event loop. Rows serve row reads.
        self._columns = np.zeros((dim, _INITIAL_CAPACITY), dtype=np.float32)
        self._has_vector = np.zeros(_INITIAL_CAPACITY, dtype=bool)
        self._deleted = np.zeros(_INITIAL_CAPACITY, dtype=bool)
        self._item_ts = np.full(_INITIAL_CAPACITY, np.nan)
        self._popularity = np.zeros(_INITIAL_CAPACITY)
        self._popularity_ref_ts = np.zeros(_INITIAL_CAPACITY)
        # time_groups of the item times, kept until a time changes or a row is added.
        self._ts_groups: tuple[np.ndarray, np.ndarray] | None = None
        # Co-visitation rows do not depend on the model: indexes of one catalog share them.
        # A row replayed from the table stays in its binary form until a ranking reads it.
        self._covisits: dict[str, CovisitRow | bytes] = {} if covisits is None else covisits
        # Rows as (catalog rows, normalised scores), converted when first read.
        self._covisit_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def active_count(self) -> int:
        """Items that can be recommended now."""
        n = len(self._ids)
        return int((self._has_vector[:n] & ~self._deleted[:n]).sum())

    def _row(self, item_id: str) -> int:
        row = self._rows.get(item_id)
        if row is not None:
            return row
        row = len(self._ids)
        if row == self._vectors.shape[0]:
            self._grow()
        self._ids.append(item_id)
        self._rows[item_id] = row
        return row

    def _grow(self) -> None:
        cap = self._vectors.shape[0] * 2
        self._vectors = np.resize(self._vectors, (cap, self.dim))
        self._vectors[len(self._ids) :] = 0.0
        columns = np.zeros((self.dim, cap), dtype=np.float32)
        columns[:, : self._columns.shape[1]] = self._columns
        self._columns = columns
        for name, fill in (
            ("_has_vector", False),
            ("_deleted", False),
            ("_item_ts", np.nan),
            ("_popularity", 0.0),
            ("_popularity_ref_ts", 0.0),
        ):
            old = getattr(self, name)
            new = np.full(cap, fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def upsert(self, item_id: str, vector: np.ndarray | None, model_id: str, ts: float | None) -> None:
        """Set an item's vector (ignored unless it is of this index's model)."""
        existing = item_id in self._rows
        row = self._row(item_id)
        self._deleted[row] = False
        self._set_ts(row, ts)
        usable = vector is not None and model_id == self.model_id and vector.shape == (self.dim,)
        new = vector if usable else np.zeros(self.dim, dtype=np.float32)
        changed = existing and not np.array_equal(self._vectors[row], new)
        if changed:
            self._similarity_rows.clear()  # a column of every cached row changes
        self._write_vector(row, new, changed)
        self._has_vector[row] = usable

    def touch(self, item_id: str, ts: float | None) -> None:
        """Record that the item is live (undeleted, with this time) without changing its vector.

        Used for an index of another model than the one that produced the item's latest vector:
        it keeps serving the vector it had until scoring moves to the new model.
        """
        row = self._row(item_id)
        self._deleted[row] = False
        self._set_ts(row, ts)

    def _set_ts(self, row: int, ts: float | None) -> None:
        value = np.nan if ts is None else float(ts)
        old = self._item_ts[row]
        if old != value and not (np.isnan(old) and np.isnan(value)):
            self._item_ts[row] = value
            self._ts_groups = None

    def delete(self, item_id: str) -> None:
        """Retire an item: it is never recommended again (until re-added)."""
        row = self._row(item_id)
        self._deleted[row] = True
        self._has_vector[row] = False
        self._write_vector(row, np.zeros(self.dim, dtype=np.float32), changed=True)

    def _write_vector(self, row: int, vector: np.ndarray, changed: bool) -> None:
        """Write a row's vector in both layouts; a ``changed`` one is multiplied exactly by
        the int8 products until they pack the catalog again."""
        self._vectors[row] = vector
        self._columns[:, row] = vector
        if changed and self._int8 is not None:
            self._int8.changed(row)

    def set_popularity(self, item_id: str, score: float, ref_ts: float) -> None:
        """Set an item's decayed popularity as held at ``ref_ts``."""
        row = self._row(item_id)
        self._popularity[row] = score
        self._popularity_ref_ts[row] = ref_ts

    def set_covisits(self, item_id: str, row: CovisitRow | bytes | None) -> None:
        """Set an item's co-visitation row, or its stored form (``CovisitRow.to_bytes``,
        decoded when first scored); None or an empty row removes it (a stored one once read)."""
        self._covisit_arrays.pop(item_id, None)
        if row is None or (not isinstance(row, bytes) and not row.scores):
            self._covisits.pop(item_id, None)
        else:
            self._covisits[item_id] = row

    def covisits_of(self, item_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """An item's neighbours as (catalog rows, scores summing to 1), or None."""
        arrays = self._covisit_arrays.get(item_id)
        if arrays is None:
            row = self._covisits.get(item_id)
            if row is None:
                return None
            if isinstance(row, bytes):
                ids, scores = row_arrays(row)
                if not ids:  # an empty row, stored
                    del self._covisits[item_id]
                    return None
            else:
                ids = list(row.scores)
                scores = np.fromiter(row.scores.values(), dtype=np.float64, count=len(ids))
            found = list(map(self._rows.get, ids))
            if None in found:  # a neighbour the catalog has not seen yet gets its row
                found = [self._row(k) for k in ids]
            rows = np.array(found, dtype=np.int64)
            # A row is a distribution over "what came next": its sum cancels the landmark
            # scaling and keeps heavy rows from drowning out the rest.
            arrays = (rows, scores / scores.sum())
            self._covisit_arrays[item_id] = arrays
        return arrays

    def vector_of(self, item_id: str) -> np.ndarray | None:
        """The item's vector under this index's model, or None."""
        row = self._rows.get(item_id)
        if row is None or not self._has_vector[row]:
            return None
        return self._vectors[row]

    def rows_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Row of each id, -1 for ids never seen."""
        get = self._rows.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64)

    def view(self) -> CatalogView:
        """Arrays for ranking (views, not copies: use before the next update)."""
        n = len(self._ids)
        has_vector, deleted = self._has_vector[:n], self._deleted[:n]
        groups = self._ts_groups
        if groups is None or len(groups[1]) != n:
            groups = self._ts_groups = time_groups(self._item_ts[:n])
        return CatalogView(
            item_ids=self._ids,
            vectors=self._vectors[:n],
            active=has_vector & ~deleted,
            deleted=deleted,
            item_ts=self._item_ts[:n],
            popularity=self._popularity[:n],
            popularity_ref_ts=self._popularity_ref_ts[:n],
            ts_groups=groups,
        )

    def _similarity_rows_with(
        self, item_ids: Sequence[str], queries: list[np.ndarray]
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Cosine of each item (which must have a vector) to every catalog row, and of each
        unit vector of ``queries``: cached rows are reused, the missing ones and the queries
        computed in one product (one read of the catalog matrix)."""
        n = len(self._ids)
        cache = self._similarity_rows
        missing = [i for i in dict.fromkeys(item_ids) if i not in cache or len(cache[i]) < n]
        fresh: dict[str, np.ndarray] = {}
        new = [i for i in missing if i not in cache]
        answers = np.zeros((0, n), dtype=np.float32)
        if new or queries:  # one product for all of them: the catalog matrix is read once
            stacked = np.stack([*queries, *(self._vectors[self._rows[i]] for i in new)])
            if self._int8 is None:
                block = similarity_product(stacked, self._columns[:, :n])
            else:
                block = self._int8.product(stacked, self._vectors[:n])
            answers = block[: len(queries)]
            for item_id, row in zip(new, block[len(queries) :], strict=True):
                fresh[item_id] = cache[item_id] = row.copy()  # not a view holding the block
        for item_id in missing:
            if item_id not in fresh:  # cached before items were appended: add their columns
                fresh[item_id] = self._extend(item_id, self._vectors[self._rows[item_id]], n)
        out = []
        for item_id in item_ids:
            row = fresh.get(item_id)
            if row is None:
                row = cache[item_id]
                cache.move_to_end(item_id)
            out.append(row[:n])
        self._bound_similarity_cache(n)
        return out, answers

    def _extend(self, item_id: str, query: np.ndarray, n: int) -> np.ndarray:
        old = self._similarity_rows.get(item_id)
        start = 0 if old is None else len(old)
        tail = similarity_product(query[None, :], self._columns[:, start:n])[0]
        row = tail if old is None else np.concatenate([old, tail])
        self._similarity_rows[item_id] = row
        self._similarity_rows.move_to_end(item_id)
        return row

    def _bound_similarity_cache(self, n: int) -> None:
        keep = self._similarity_cache_bytes // max(4 * n, 1)
        while len(self._similarity_rows) > keep:
            self._similarity_rows.popitem(last=False)

    def covisit_evidence(self, profile: UserProfile, max_items: int) -> tuple[np.ndarray, np.ndarray]:
        """Co-visitation rows of the user's ``max_items`` most recent distinct items.

        The k-th most recent item's row is weighted 1/k: what a user just did says most
        about what comes next.
        """
        rows: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        taken: set[str] = set()
        for item_id, _, _ in reversed(profile.history):
            if len(taken) >= max_items:
                break
            if item_id in taken:
                continue
            taken.add(item_id)
            arrays = self.covisits_of(item_id)
            if arrays is not None:
                rows.append(arrays[0])
                scores.append(arrays[1] / len(taken))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(rows), np.concatenate(scores)

    def user_views(
        self, profiles: Sequence[UserProfile | None], history_items: int, covisit_items: int = 0
    ) -> list[UserView]:
        """Ranking views of many profiles, with their similarity rows at hand.

        The recent items' rows missing from the cache and every user's interest row are
        computed in one product: on a CPU, reading the catalog matrix is what a batch's
        content scoring costs.
        """
        views = [self._user_view(p, history_items, covisit_items) for p in profiles]
        if self._similarity_cache_bytes <= 0:
            return views
        ids = [item_id for view in views for item_id in view.history_ids]
        directions = [interest_direction(view.interest) for view in views]
        history_rows, interest_rows = self._similarity_rows_with(
            ids, [d for d in directions if d is not None]
        )
        rows, interests = iter(history_rows), iter(interest_rows)
        return [
            dataclasses.replace(
                view,
                history_sims=[next(rows) for _ in view.history_ids] if view.history_ids else None,
                interest_sims=None if direction is None else next(interests),
            )
            for view, direction in zip(views, directions, strict=True)
        ]

    def user_view(self, profile: UserProfile | None, history_items: int, covisit_items: int = 0) -> UserView:
        """The ranking view of a profile: interest, recent vectors, seen rows, co-visits."""
        return self.user_views([profile], history_items, covisit_items)[0]

    def _user_view(self, profile: UserProfile | None, history_items: int, covisit_items: int) -> UserView:
        if profile is None:
            return UserView(None, [], np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, np.int64))
        ids: list[str] = []
        vectors: list[np.ndarray] = []
        times: list[float] = []
        taken: set[str] = set()
        for item_id, _, weight in reversed(profile.history):
            if len(ids) >= history_items:
                break
            if item_id in taken or weight <= 0:
                continue
            vec = self.vector_of(item_id)
            if vec is not None:
                ids.append(item_id)
                vectors.append(vec)
                times.append(float(self._item_ts[self._rows[item_id]]))
                taken.add(item_id)
        seen = self.rows_of(profile.seen())
        interest = profile.vector if profile.has_interest and profile.model_id == self.model_id else None
        covisit_rows, covisit_scores = self.covisit_evidence(profile, covisit_items)
        return UserView(
            interest=interest,
            history_ids=ids,
            history_vectors=np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32),
            seen_rows=seen[seen >= 0],
            covisit_rows=covisit_rows,
            covisit_scores=covisit_scores,
            history_ts=np.asarray(times, dtype=np.float64),
        )
