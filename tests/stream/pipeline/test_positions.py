"""Position records: their keys, the owner's changelog partition, and waiting for progress."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.kafka.partitioner import owner_partition
from stream.pipeline.positions import (
    EventsProgress,
    OwnerPartitionTable,
    OwnWrites,
    intent_key,
    is_internal,
    owner_key,
)


class FakeTable(dict[str, Any]):
    """A Faust table's mapping, store (``data``) and changelog sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[int, str, Any]] = []

    @property
    def data(self) -> FakeTable:
        return self

    def send_changelog(self, partition: int, key: str, value: Any) -> None:
        self.sent.append((partition, key, value))


def test_position_keys_are_internal_and_no_id_is() -> None:
    assert is_internal(intent_key(3)) and is_internal(owner_key("merged", 2))
    assert not is_internal("42") and not is_internal("user:\x00")


def test_an_owner_writes_every_record_to_its_own_changelog_partition() -> None:
    table = FakeTable()
    owned = OwnerPartitionTable(table, partitions=8)  # type: ignore[arg-type]
    owned["item-1"] = b"a"
    owned[owner_key("merged", 5)] = b"m"
    owned[owner_key("merged", 7)] = b"f"
    assert table.sent == [
        (owner_partition("item-1", 8), "item-1", b"a"),
        (5, owner_key("merged", 5), b"m"),
        (7, owner_key("merged", 7), b"f"),
    ]
    assert owned.get("item-1") == b"a" and owned.get("nope") is None and len(owned) == 3


def test_waiting_for_applied_events_ends_when_they_are_or_at_the_timeout() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        progress = EventsProgress()
        waiter = asyncio.create_task(progress.wait_applied(2, 10, timeout_s=5.0))
        await asyncio.sleep(0)
        progress.advance({2: 9})
        await asyncio.sleep(0)
        assert not waiter.done()
        progress.advance({2: 12})
        applied = await waiter
        timed_out = await progress.wait_applied(1, 0, timeout_s=0.01)
        progress.forget([2])
        forgotten = await progress.wait_applied(2, 10, timeout_s=0.01)
        return applied, timed_out, forgotten

    assert asyncio.run(scenario()) == (True, False, False)


def test_an_owner_reads_its_own_writes_until_its_store_holds_them_again() -> None:
    table, own = FakeTable(), OwnWrites()
    owned = OwnerPartitionTable(table, partitions=4, own_writes=own)  # type: ignore[arg-type]
    owned["x"] = b"v1"
    owned["x"] = b"v2"
    # The changelog brings the first write back: it is not scored, and the store is set
    # back to it while the second is still on its way...
    assert not own.read_back("x", b"v1")
    table["x"] = b"v1"
    assert owned.get("x") == b"v2" and owned["x"] == b"v2"  # ...but the owner reads its latest
    assert own.read_back("x", b"v2")
    assert owned.get("x") == b"v2"  # read back, not yet applied to the store
    table["x"] = b"v2"
    own.settle(table)
    assert own.pending == {} and owned.get("x") == b"v2"
    assert own.read_back("y", b"another owner's")  # nothing pending: applied as it comes
