"""Input positions kept with the state, so that a replay changes nothing twice.

Kafka redelivers whatever was read after the last commit when a worker crashes or a
partition moves. Without transactions, streamrank makes each effect on the state
idempotent by storing, with the state, the input position it reflects (docs/reliability.md):

- a profile records the position of the newest event it applied (``core.batch``);
- before it sends a batch's statistics, the events agent stores in ``user-profiles``
  (same partition as the profiles, so the changelog keeps the order) the range of
  offsets the statistics sum, its *intent*; after a crash the range is sent again, with
  the same boundaries, and the owners recognise it (``core.window``);
- an owner records in each entry the offset of the last message merged into it, and per
  events partition the newest range merged. It writes all of these to its own partition
  of the statistics tables' changelogs (:class:`OwnerPartitionTable`), where they keep
  their order. A worker that takes an owner partition starts from its copy of the global
  tables, which Faust's recovery has brought to the changelogs' end before any message
  is delivered (the previous owner flushed its writes when it let the partition go, or
  died with them unacknowledged and its input uncommitted). Its own writes come back to
  it through the changelog later: until they do, it reads what it wrote
  (:class:`OwnWrites`), not the older values the changelog replays meanwhile.

Keys of these records start with ``INTERNAL_PREFIX``, which no id can: ids are refused
with control characters (``core.contracts``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from faust.types import TableT

from stream.core.position_records import StatisticsIntent
from stream.kafka.partitioner import owner_partition

log = logging.getLogger(__name__)

INTERNAL_PREFIX = "\x00"


def is_internal(key: str) -> bool:
    """Whether a table key is one of streamrank's position records, not an id."""
    return key.startswith(INTERNAL_PREFIX)


def intent_key(partition: int) -> str:
    """The ``user-profiles`` key of an events partition's statistics intent.

    Written while an event of the partition is current, so it lands in that partition's
    store and changelog; the number keeps the partitions' records apart in a store that
    holds several.
    """
    return f"{INTERNAL_PREFIX}statistics-intent:{partition}"


def owner_key(kind: str, owner: int) -> str:
    """The key of an owner partition's record of ``kind`` in a statistics table."""
    return f"{INTERNAL_PREFIX}{kind}:{owner}"


class OwnerPartitionTable(MutableMapping[str, bytes]):
    """A global statistics table whose every write goes to its key's owner partition of
    the changelog (``owner_partition``; an owner's own records: the number in their key),
    and whose reads see this worker's writes before the changelog brings them back.

    Faust would partition a global table's changelog by the hash of the serialised key, and
    spread an owner's writes over every partition. In the owner's partition they keep the
    order they were written in: a reader that has read an owner's merged positions, or its
    fence, has read every entry the owner wrote before them.
    """

    def __init__(self, table: TableT, partitions: int, own_writes: OwnWrites | None = None) -> None:
        self.table = table
        self.partitions = partitions
        self.own_writes = OwnWrites() if own_writes is None else own_writes

    def partition_of(self, key: str) -> int:
        """The changelog partition of ``key``'s writes."""
        if is_internal(key):
            return int(key.rsplit(":", 1)[1])
        return owner_partition(key, self.partitions)

    def __getitem__(self, key: str) -> bytes:
        value = self.own_writes.get(key, self.table)
        return self.table[key] if value is None else value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``: this worker's latest write, else the store's (``default``: none)."""
        value = self.own_writes.get(key, self.table)
        return self.table.get(key, default) if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.own_writes.wrote(key, value)
        self.table.data[key] = value
        self.table.send_changelog(self.partition_of(key), key, value)

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("statistics entries are never deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


@dataclass
class EventsProgress:
    """Per events partition: the stored statistics intent, how far this worker has sent
    statistics and applied events since it took the partition, and who waits for it.
    """

    intents: dict[int, StatisticsIntent] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)  # statistics sent through, this run
    applied: dict[int, int] = field(default_factory=dict)  # events applied through, this run
    # Partitions applied nothing of this run, whose end was waited for in vain (the end then).
    settled: dict[int, int] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is held of revoked partitions: another worker may take them on."""
        for partition in partitions:
            self.intents.pop(partition, None)
            self.sent.pop(partition, None)
            self.applied.pop(partition, None)
            self.settled.pop(partition, None)

    def advance(self, applied: dict[int, int]) -> None:
        """Record events applied through the given offsets, and wake who waits for them."""
        for partition, offset in applied.items():
            if offset > self.applied.get(partition, -1):
                self.applied[partition] = offset
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_applied(self, partition: int, offset: int, timeout_s: float) -> bool:
        """Wait until events of ``partition`` through ``offset`` are applied; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.applied.get(partition, -1) < offset:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True


class OwnWrites:
    """What an owner wrote to a global table that its changelog has not brought back yet.

    A global table's store is fed by its changelog, this worker's own records included,
    and those come back a fetch or more after they were written, and are applied to the
    store in buffered batches later still: in between, the store can be set back to an
    entry's previous value, and a window merged into that would lose the window before it
    (seen under load). Reads prefer the value written here until the store holds it
    again; records of a partition come back in order, so every older one has been
    applied by then.
    """

    def __init__(self) -> None:
        self.pending: dict[str, bytes] = {}

    def wrote(self, key: str, value: bytes) -> None:
        """``value`` was written under ``key`` (to the store and the changelog)."""
        self.pending[key] = value

    def read_back(self, key: str, value: object) -> bool:
        """Whether a changelog record of ``key`` is this worker's latest value of it (or
        of a key it has no write pending for): an older one is not to be scored."""
        pending = self.pending.get(key)
        return pending is None or pending == value

    def get(self, key: str, store: Mapping[str, Any]) -> bytes | None:
        """The value written under ``key`` while ``store`` does not hold it yet (None: it does)."""
        pending = self.pending.get(key)
        if pending is not None and store.get(key) == pending:
            del self.pending[key]
            return None
        return pending

    def settle(self, store: Mapping[str, Any]) -> None:
        """Drop the writes ``store`` holds again, so that what is pending stays few."""
        for key in [key for key, value in self.pending.items() if store.get(key) == value]:
            del self.pending[key]

    def clear(self) -> None:
        """Forget pending writes: after a rebalance, recovery has read them all back."""
        self.pending.clear()
