"""Co-visitation pairs: which pairs an interaction forms, and a batch's pairs summed.

When a user interacts with item ``i``, each of the user's ``window`` previous items
``j`` (within ``window_s`` seconds) is paired with it: row ``j`` gains ``i`` and row
``i`` gains ``j`` with ``backward_weight``, nearer pairs counting more (weight
``1 / distance``). :func:`pair_increments` is the definition for one interaction;
:func:`form_pairs` forms and sums a whole batch's pairs with array operations, as the
events agent does. The rows the sums are merged into are ``covisit``'s. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stream.core.covisit import CovisitParams, HistoryEntry, PairIncrement


def paired_items(
    history: Sequence[HistoryEntry], item_id: str, ts: float, params: CovisitParams
) -> Iterator[tuple[str, float, float]]:
    """The earlier items a new interaction with ``item_id`` at ``ts`` is paired with.

    Yields ``(item, 1 / distance, pair time)``, nearest first: the user's ``window`` most
    recent distinct items other than ``item_id`` within ``window_s`` seconds; a pair is
    held at the later of its two times (a history entry may be later than the event).

    Args:
        history: the user's earlier interactions, oldest first (a profile's history
            before this event is applied).
    """
    window, window_s = params.window, params.window_s
    distance = 0
    seen: set[str] = {item_id}
    for prev_id, prev_ts, _ in reversed(history):
        if distance >= window or abs(ts - prev_ts) > window_s:
            break
        if prev_id in seen:
            continue
        seen.add(prev_id)
        distance += 1
        yield prev_id, 1.0 / distance, ts if ts >= prev_ts else prev_ts


def pair_increments(
    history: Sequence[HistoryEntry], item_id: str, ts: float, params: CovisitParams
) -> list[PairIncrement]:
    """The co-visitation pairs formed by a new interaction with ``item_id`` at ``ts``.

    Row ``j`` gains ``item_id`` for each paired earlier item ``j``, and row ``item_id``
    gains ``j`` with ``backward_weight``. The definition, one pair at a time: the workers
    and the evaluation form and sum a batch's pairs together (:func:`form_pairs`, tested
    against this).
    """
    backward = params.backward_weight
    out: list[PairIncrement] = []
    for prev_id, weight, pair_ts in paired_items(history, item_id, ts, params):
        out.append((prev_id, item_id, weight, pair_ts))
        if backward > 0.0:
            out.append((item_id, prev_id, weight * backward, pair_ts))
    return out


# Batches of at most this many interactions are paired one by one: below it, the fixed
# cost of the array operations (about 0.1 ms) is more than pairing them takes (timed with
# full 20-item windows: 0.28 ms either way at 8 interactions, 0.08 against 0.15 at 2).
_FEW_INTERACTIONS = 8

# A user's earlier interactions, and the user's interactions of a batch as (item_id, ts)
# in time order, applied one after another.
UserInteractions = tuple[Sequence[HistoryEntry], Sequence[tuple[str, float]]]


@dataclass(frozen=True, slots=True)
class PairSums:
    """A batch's co-visitation increments, summed: row ``names[rows[k]]`` gains neighbour
    ``names[neighbours[k]]`` by ``values[k]``.

    A row's entries are contiguous. Rows come in the order they were first formed, and a
    row's neighbours in the order their pairs were first formed, as summing the pairs one
    by one into dicts leaves them (of equal scores, a pruned row keeps the earlier).
    """

    names: list[str]
    rows: np.ndarray  # int64
    neighbours: np.ndarray  # int64
    values: np.ndarray  # float64

    @classmethod
    def of_rows(cls, rows: Mapping[str, Mapping[str, float]]) -> PairSums:
        """Sums given as ``{row: {neighbour: value}}`` (empty rows are dropped)."""
        number: dict[str, int] = {}
        nested = {
            number.setdefault(row, len(number)): {
                number.setdefault(n, len(number)): v for n, v in scores.items()
            }
            for row, scores in rows.items()
        }
        return _of_nested(list(number), nested)

    def row_slices(self) -> Iterator[tuple[str, list[str], list[float]]]:
        """``(row, neighbours, values)`` of each row, in order."""
        names = self.names
        neighbours = [names[i] for i in self.neighbours.tolist()]
        values = self.values.tolist()
        starts = run_starts(self.rows)
        ends = [*starts[1:], len(values)] if starts else []
        for start, end in zip(starts, ends, strict=True):
            yield names[int(self.rows[start])], neighbours[start:end], values[start:end]

    def to_rows(self) -> dict[str, dict[str, float]]:
        """``{row: {neighbour: value}}``, in order."""
        return {row: dict(zip(n, v, strict=True)) for row, n, v in self.row_slices()}


def run_starts(values: np.ndarray) -> list[int]:
    """Where each run of equal consecutive values starts."""
    if len(values) == 0:
        return []
    return [0, *(np.flatnonzero(values[1:] != values[:-1]) + 1).tolist()]


def form_pairs(
    users: Sequence[UserInteractions], params: CovisitParams, ref_ts: float, history_size: int | None = None
) -> PairSums:
    """The co-visitation pairs of a batch's interactions, each decayed to ``ref_ts``, summed.

    Each user's interactions are paired in turn, as :func:`paired_items` pairs each with
    the history just before it: the user's history, then the user's earlier interactions
    of the batch, bounded to the last ``history_size`` entries (None: unbounded). Row
    ``j`` gains the item by ``1 / distance`` and the item's row gains ``j`` by
    ``backward_weight`` times that, each scaled by ``2^((pair time - ref_ts) /
    half-life)``: the same floats, summed in the same order, as summing the pairs of
    :func:`pair_increments` one by one.

    Pairs are formed with array operations: a busy batch forms tens of pairs per event,
    and a dict update per pair cost a tenth of the events agent's time. An interaction
    whose previous entries, up to ``window`` of them and up to the first more than
    ``window_s`` away, are distinct and differ from its item pairs with exactly those.
    The others (a repeated item among them, a history bound below ``window``) go through
    :func:`pair_increments`, as do all the interactions of a batch of at most
    ``_FEW_INTERACTIONS``.
    """
    window = params.window
    number: dict[str, int] = {}
    entries: list[int] = []  # item numbers: each user's last `window` history items, then interactions
    times: list[float] = []
    users_of_entries: list[int] = []
    positions: list[int] = []  # each interaction's entry
    firsts: list[int] = []  # the first entry of each interaction's user
    origins: list[tuple[int, int]] = []  # each interaction's (user, index among theirs)
    for user, (history, interactions) in enumerate(users):
        first = len(entries)
        for item_id, ts, _ in history[-window:]:
            entries.append(number.setdefault(item_id, len(number)))
            times.append(ts)
        for k, (item_id, ts) in enumerate(interactions):
            positions.append(len(entries))
            firsts.append(first)
            origins.append((user, k))
            entries.append(number.setdefault(item_id, len(number)))
            times.append(ts)
        users_of_entries.extend([user] * (len(entries) - first))
    if not positions:
        return PairSums(list(number), *_no_pairs())
    if len(positions) <= _FEW_INTERACTIONS:
        _, rows, neighbours, values = _pairs_one_by_one(users, origins, number, params, ref_ts, history_size)
        return _summed_few(list(number), rows, neighbours, values)

    items = np.asarray(entries, dtype=np.int64)
    at = np.asarray(times, dtype=np.float64)
    # math.exp2 per entry, as the one-by-one sums compute it: the same floats.
    half_life = params.half_life_s
    factor = np.asarray([math.exp2((ts - ref_ts) / half_life) for ts in times], dtype=np.float64)
    # Each entry's previous entry of the same user and item (-1: none).
    key = np.asarray(users_of_entries, dtype=np.int64) * len(number) + items
    order = stable_order(key)
    previous = np.full(len(items), -1, dtype=np.int64)
    again = key[order[1:]] == key[order[:-1]]
    previous[order[1:][again]] = order[:-1][again]

    event = np.asarray(positions, dtype=np.int64)
    first = np.asarray(firsts, dtype=np.int64)
    distance = np.arange(1, window + 1, dtype=np.int64)
    earlier = event[:, None] - distance[None, :]  # (interactions, window): nearest first
    present = earlier >= first[:, None]
    earlier = np.where(present, earlier, event[:, None])  # any valid index where absent
    # The scan stops at the first entry more than window_s away.
    far = present & (np.abs(at[earlier] - at[event][:, None]) > params.window_s)
    reached = present & (np.cumsum(far, axis=1) == 0)
    # Distinct reached entries, none of them the item itself: then the pairs are those.
    lowest = event - reached.sum(axis=1)
    repeats = np.where(reached, previous[earlier], -1).max(axis=1, initial=-1)
    by_array = np.maximum(repeats, previous[event]) < lowest
    if history_size is not None and history_size < window:  # the bound cuts scans short
        by_array[:] = False

    # In the one-by-one order: interaction, distance, forward pair then backward.
    which, nearness = np.nonzero(reached & by_array[:, None])
    paired, this = earlier[which, nearness], event[which]
    earlier_items, this_items = items[paired], items[this]
    later = at[paired] > at[this]  # a pair is held at its later time
    pair_factor = np.where(later, factor[paired], factor[this])
    weight = 1.0 / (nearness + 1).astype(np.float64)
    sides = 2 if params.backward_weight > 0.0 else 1
    rows = np.empty(sides * len(which), dtype=np.int64)
    neighbours = np.empty_like(rows)
    values = np.empty(len(rows), dtype=np.float64)
    rows[::sides], neighbours[::sides], values[::sides] = earlier_items, this_items, weight * pair_factor
    if sides == 2:
        rows[1::2], neighbours[1::2] = this_items, earlier_items
        values[1::2] = (weight * params.backward_weight) * pair_factor

    one_by_one = np.flatnonzero(~by_array).tolist()
    if one_by_one:
        formed_by, formed_rows, formed_neighbours, formed_values = _pairs_one_by_one(
            users, [origins[e] for e in one_by_one], number, params, ref_ts, history_size
        )
        if formed_by:
            interaction = np.asarray(one_by_one, dtype=np.int64)[formed_by]
            order = stable_order(np.concatenate([np.repeat(which, sides), interaction]))
            rows = np.concatenate([rows, formed_rows])[order]
            neighbours = np.concatenate([neighbours, formed_neighbours])[order]
            values = np.concatenate([values, formed_values])[order]
    return _summed(list(number), rows, neighbours, values)


def _pairs_one_by_one(
    users: Sequence[UserInteractions],
    origins: Sequence[tuple[int, int]],
    number: dict[str, int],
    params: CovisitParams,
    ref_ts: float,
    history_size: int | None,
) -> tuple[list[int], list[int], list[int], list[float]]:
    """The pairs of the interactions ``origins`` ((user, index among theirs)), formed one
    by one with :func:`pair_increments`: for each pair, the index into ``origins`` it was
    formed for, its row and neighbour (numbers, ``number`` extended), and its value."""
    formed_by: list[int] = []
    rows: list[int] = []
    neighbours: list[int] = []
    values: list[float] = []
    half_life = params.half_life_s
    before: list[HistoryEntry] = []
    last: tuple[int, int] | None = None
    for position, (user, k) in enumerate(origins):
        history, interactions = users[user]
        if last == (user, k - 1):  # the next interaction of the same user: extend
            before.append((*interactions[k - 1], 0.0))
        else:
            before = [*history, *((i, t, 0.0) for i, t in interactions[:k])]
        if history_size is not None and len(before) > history_size:
            del before[: len(before) - history_size]
        last = (user, k)
        item_id, ts = interactions[k]
        at_event = math.exp2((ts - ref_ts) / half_life)
        for row_id, neighbour_id, weight, pair_ts in pair_increments(before, item_id, ts, params):
            factor = at_event if pair_ts == ts else math.exp2((pair_ts - ref_ts) / half_life)
            formed_by.append(position)
            rows.append(number.setdefault(row_id, len(number)))
            neighbours.append(number.setdefault(neighbour_id, len(number)))
            values.append(weight * factor)
    return formed_by, rows, neighbours, values


def _summed_few(names: list[str], rows: list[int], neighbours: list[int], values: list[float]) -> PairSums:
    """:func:`_summed` of a few pairs, with dicts: the same floats and order, without the
    fixed cost of a dozen array operations."""
    sums: dict[int, dict[int, float]] = {}
    for row_number, neighbour, value in zip(rows, neighbours, values, strict=True):
        row = sums.get(row_number)
        if row is None:
            sums[row_number] = {neighbour: value}
        else:
            row[neighbour] = row.get(neighbour, 0.0) + value
    return _of_nested(names, sums)


def _of_nested(names: list[str], sums: Mapping[int, Mapping[int, float]]) -> PairSums:
    """``PairSums`` of ``{row number: {neighbour number: value}}``, in its order."""
    count = sum(map(len, sums.values()))
    return PairSums(
        names,
        np.fromiter((r for r, row in sums.items() for _ in row), dtype=np.int64, count=count),
        np.fromiter((n for row in sums.values() for n in row), dtype=np.int64, count=count),
        np.fromiter((v for row in sums.values() for v in row.values()), dtype=np.float64, count=count),
    )


def _no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def _summed(names: list[str], rows: np.ndarray, neighbours: np.ndarray, values: np.ndarray) -> PairSums:
    """Sum the pairs by (row, neighbour), in order (see :class:`PairSums`)."""
    if len(rows) == 0:
        return PairSums(names, *_no_pairs())
    n = len(names)
    key = rows * n + neighbours
    order = stable_order(key)
    ordered = key[order]
    starts = np.empty(len(key), dtype=bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    unique, first = ordered[starts], order[starts]  # each pair, and where it was first formed
    # bincount adds each bin's values in input order: the floats of adding them one by one.
    sums = np.bincount(inverse, weights=values, minlength=len(unique))
    row_of = unique // n
    first_as_row = np.full(n, len(key), dtype=np.int64)
    np.minimum.at(first_as_row, row_of, first)
    # Rows by where each was first formed, then each row's pairs by where each was.
    final = stable_order(first_as_row[row_of] * len(key) + first)
    return PairSums(names, row_of[final], (unique % n)[final], sums[final])


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of non-negative int64 keys.

    Each key's index is packed below it and the packed keys are sorted: a plain sort of
    int64 values took a sixth of the time of a stable argsort on the reference machine.
    """
    shift = max(len(keys) - 1, 1).bit_length()
    if len(keys) == 0 or int(keys.max()) >= 1 << (62 - shift):
        return np.argsort(keys, kind="stable")
    packed = np.sort((keys << shift) | np.arange(len(keys), dtype=np.int64))
    return packed & ((1 << shift) - 1)
