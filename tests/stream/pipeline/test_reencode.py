"""A model switch at the component level: re-encoding in the background, one atomic swap.

The worker-level version, through a real broker, is in tests/integration/test_encoder.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from encoders.config import EncoderSettings
from encoders.text import TextEncoder
from stream.config import Settings
from stream.core.covisit import CovisitParams
from stream.core.model_catalog import ModelCatalog
from stream.core.profiles import ProfileParams
from stream.core.ranking import RankingConfig
from stream.encoding.embedder import ItemEmbedder
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.agents.items import catalog_entry
from stream.pipeline.metrics import Metrics
from stream.pipeline.reencode import reencode_round
from stream.pipeline.tables import apply_catalog_entry

pytestmark = pytest.mark.model

TITLES = [
    "Alien (1979)",
    "Aliens (1986)",
    "Blade Runner (1982)",
    "Notting Hill (1999)",
    "Pretty Woman (1990)",
    "Titanic (1997)",
    "Heat (1995)",
]


class WatchingEmbedder(ItemEmbedder):
    """Records, at every encoder call, which model scoring reads and which vectors it holds."""

    def __init__(self, *args: Any, catalog: ModelCatalog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog = catalog
        self.seen: list[tuple[str, int]] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        index = self.catalog.active
        self.seen.append((index.model_id, index.active_count))
        return await super().embed(texts)


def encoder(max_seq_length: int) -> TextEncoder:
    settings = EncoderSettings(model="", device="cpu", max_seq_length=max_seq_length, cache_size=0)
    return TextEncoder.from_settings(settings)


def test_switching_models_re_encodes_in_the_background_then_swaps_once() -> None:
    old, new = encoder(128), encoder(64)
    assert old.model_id != new.model_id
    registry = CollectorRegistry()
    metrics = Metrics(registry, event_types=["view"], source_topics=["events"])
    settings = Settings(item_batch_size=3)
    catalog = ModelCatalog(new.model_id, new.dim)
    embedder = WatchingEmbedder(settings.encoder, new.model_id, new.dim, metrics, local=new, catalog=catalog)
    item_catalog: dict[str, Any] = {}
    # The catalog as the old model left it.
    for i, (title, vector) in enumerate(zip(TITLES, old.encode(TITLES), strict=True)):
        value = {"text": title, "title": title, "ts": float(i), "model_id": old.model_id}
        value["vector"] = catalog_entry(title, title, float(i), vector, embedder)["vector"]
        item_catalog[str(i)] = value
        apply_catalog_entry(catalog, str(i), value)
    item_catalog["gone"] = {"deleted": True}
    apply_catalog_entry(catalog, "gone", {"deleted": True})
    ctx = Pipeline(
        settings=settings,
        topics=None,  # type: ignore[arg-type]
        tables=SimpleNamespace(item_catalog=item_catalog),  # type: ignore[arg-type]
        catalog=catalog,
        embedder=embedder,
        metrics=metrics,
        ranking=RankingConfig.from_settings(settings),
        profile_params=ProfileParams(1.0, 10, 10, new.model_id),
        covisit_params=CovisitParams.from_settings(settings),
    )
    assert catalog.active.model_id == old.model_id

    # This worker owns only some items: the others stay with the old model, so no swap.
    mine = {"0", "1", "2", "3"}
    done = asyncio.run(reencode_round(ctx, lambda item_id: item_id in mine))
    assert done == 4
    assert catalog.active.model_id == old.model_id
    assert sorted(catalog.missing()) == ["4", "5", "6"]
    assert registry.get_sample_value("streamrank_catalog_reencode_pending") == 3

    done = asyncio.run(reencode_round(ctx, lambda item_id: True))
    assert done == 3
    assert catalog.active is catalog.target and catalog.active.model_id == new.model_id
    assert catalog.active.active_count == len(TITLES)
    assert registry.get_sample_value("streamrank_model_switches_total") == 1
    assert registry.get_sample_value("streamrank_catalog_reencode_pending") == 0
    assert registry.get_sample_value("streamrank_items_reencoded_total") == len(TITLES)
    # Every encoder call happened while scoring read the old model, with all its items.
    assert embedder.seen == [(old.model_id, len(TITLES))] * len(embedder.seen)
    assert len(embedder.seen) == 3  # chunks of item_batch_size=3: 4 items -> 2, then 3 -> 1
    # The table now holds the new model's vectors, equal to encoding the texts directly.
    assert {v.get("model_id") for k, v in item_catalog.items() if k != "gone"} == {new.model_id}
    expected = new.encode(TITLES)
    got = np.stack([catalog.active.vector_of(str(i)) for i in range(len(TITLES))])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert asyncio.run(reencode_round(ctx, lambda item_id: True)) == 0


def test_an_entry_changed_while_encoding_is_not_overwritten() -> None:
    new = encoder(64)
    registry = CollectorRegistry()
    metrics = Metrics(registry, event_types=["view"], source_topics=["events"])
    settings = Settings()
    catalog = ModelCatalog(new.model_id, new.dim)
    item_catalog: dict[str, Any] = {"a": {"text": "Heat (1995)", "title": "Heat", "ts": 1.0, "model_id": ""}}
    apply_catalog_entry(catalog, "a", item_catalog["a"])

    class Racing(ItemEmbedder):
        async def embed(self, texts: Sequence[str]) -> np.ndarray | None:
            vectors = await super().embed(texts)
            # Meanwhile the item agent stores an update with its own fresh vector.
            item_catalog["a"] = {"text": "Heat (1995) remastered", "title": "Heat", "ts": 2.0, "model_id": ""}
            return vectors

    ctx = Pipeline(
        settings=settings,
        topics=None,  # type: ignore[arg-type]
        tables=SimpleNamespace(item_catalog=item_catalog),  # type: ignore[arg-type]
        catalog=catalog,
        embedder=Racing(settings.encoder, new.model_id, new.dim, metrics, local=new),
        metrics=metrics,
        ranking=RankingConfig.from_settings(settings),
        profile_params=ProfileParams(1.0, 10, 10, new.model_id),
        covisit_params=CovisitParams.from_settings(settings),
    )
    assert asyncio.run(reencode_round(ctx, lambda item_id: True)) == 0
    assert item_catalog["a"]["text"] == "Heat (1995) remastered"
