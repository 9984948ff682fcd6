"""Faust tables: the state of streamrank.

- ``user-profiles``: one profile per user (``formats.StoredProfile``), partitioned like
  ``events`` (key user_id), changelog-backed, RocksDB in production. Written only by
  ``update_user_interest``.
- ``item-catalog``: a global table (every worker holds it all) with each item's vector,
  the model that produced it, its text (to re-encode it under another model), title, time
  and deletion flag. Written by ``embed_new_items`` and by the background re-encoder.
- ``item-popularity``: a global table of decayed interaction counts per item
  (``formats.StoredPopularity``), written by ``count_item_popularity``, the one owner of
  each item's partition, so each event is counted once whatever the number of workers.
- ``item-covisits``: a global table of each item's bounded, decayed co-visitation row
  (``formats.StoredRow``), written like ``item-popularity`` by the item's single owner.

Global tables live in memory and are rebuilt from their changelogs at start; every
changelog event is also applied to the worker's vectorised ``ModelCatalog``. The
profiles and the two statistics tables hold the MessagePack forms of
``stream.core.formats`` (a bytes value type passes them through Faust as is): every
statistics window rewrites thousands of their entries, and every worker replays each one.

Each table also holds a few position records (``stream.pipeline.positions``), under keys
no id can take; they never reach the catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, TableT

from stream.config import Settings
from stream.core import popularity
from stream.core.model_catalog import ModelCatalog
from stream.core.profiles import decode_vector
from stream.pipeline.positions import OwnWrites, is_internal


@dataclass(frozen=True, slots=True)
class Tables:
    """The pipeline's tables."""

    user_profiles: TableT
    item_catalog: TableT
    item_popularity: TableT
    item_covisits: TableT
    # Per statistics table: the owner's writes its changelog has not brought back yet.
    own_writes: dict[str, OwnWrites]


def _value(raw: Any) -> dict[str, Any] | None:
    if raw is None or isinstance(raw, dict):
        return raw
    return json.loads(raw)


def _key(raw: Any) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def apply_catalog_entry(catalog: ModelCatalog, item_id: str, entry: dict[str, Any] | None) -> None:
    """Apply one ``item-catalog`` value to the catalog indexes."""
    vector = None if entry is None else entry.get("vector")
    catalog.apply_entry(item_id, entry, None if vector is None else decode_vector(vector))


def apply_popularity_entry(catalog: ModelCatalog, item_id: str, value: bytes | None) -> None:
    """Apply one ``item-popularity`` value (``formats.StoredPopularity``) to the catalog."""
    catalog.set_popularity(item_id, *popularity.decode_entry(value))


def apply_covisit_entry(catalog: ModelCatalog, item_id: str, value: bytes | None) -> None:
    """Apply one ``item-covisits`` value (``formats.StoredRow``) to the catalog.

    The row is handed over in its stored form: the catalog decodes it when a ranking first
    reads it, and most replayed rows are replaced before any does.
    """
    catalog.set_covisits(item_id, value)


def declare_tables(app: faust.App, settings: Settings, catalog: ModelCatalog) -> Tables:
    """Declare the tables; global-table changelog events feed ``catalog``."""

    own_writes = {"item-popularity": OwnWrites(), "item-covisits": OwnWrites()}

    async def on_catalog_event(event: EventT) -> None:
        apply_catalog_entry(catalog, _key(event.key), _value(event.value))

    async def on_popularity_event(event: EventT) -> None:
        key = _key(event.key)
        # An older value of an entry written since (by this worker) is not scored.
        if own_writes["item-popularity"].read_back(key, event.value) and not is_internal(key):
            apply_popularity_entry(catalog, key, event.value)

    async def on_covisit_event(event: EventT) -> None:
        key = _key(event.key)
        if own_writes["item-covisits"].read_back(key, event.value) and not is_internal(key):
            apply_covisit_entry(catalog, key, event.value)

    global_options: dict[str, Any] = {
        "partitions": settings.topic_partitions,
        "key_type": str,
        # yarl treats a bare "memory://" as an empty URL, so name a host.
        "store": "memory://global",
        # Writers are the owners of the item's input partition, not of the changelog
        # partition; every worker reads every changelog partition. (The statistics
        # owners name the partition of each write: positions.OwnerPartitionTable.)
        "use_partitioner": True,
    }
    return Tables(
        user_profiles=app.Table(
            "user-profiles",
            partitions=settings.topic_partitions,
            key_type=str,
            # ``UserProfile.to_bytes``; a bytes value type makes Faust pass it through as is
            # ("raw") to the store and the changelog, where a JSON value was formatted twice
            # per write, once for each.
            value_type=bytes,
            help="Per-user interest vector, history and counters.",
        ),
        item_catalog=app.GlobalTable(
            "item-catalog",
            on_changelog_event=on_catalog_event,
            help="Item vectors tagged with their model, with the text they were encoded from.",
            **global_options,
        ),
        item_popularity=app.GlobalTable(
            "item-popularity",
            on_changelog_event=on_popularity_event,
            value_type=bytes,
            help="Time-decayed interaction counts per item.",
            **global_options,
        ),
        item_covisits=app.GlobalTable(
            "item-covisits",
            on_changelog_event=on_covisit_event,
            value_type=bytes,
            help="Bounded, time-decayed co-visitation neighbours per item.",
            **global_options,
        ),
        own_writes=own_writes,
    )
