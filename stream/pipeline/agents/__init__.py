"""The agents, one per input topic, each decode -> pure function -> table -> send.

| agent | reads | writes |
|---|---|---|
| ``update_user_interest`` | ``events`` | ``user-profiles``, ``recommendations``, ``item-interactions`` |
| ``count_item_popularity`` | ``item-interactions`` | ``item-popularity``, ``item-covisits`` |
| ``embed_new_items`` | ``items`` | ``item-catalog`` |
| ``rerank_requests`` | ``rerank-requests`` | ``recommendations`` |

Every agent writes to ``dead-letters`` too: malformed input goes there with its reason
and original bytes, and the agent moves on. Agents that write tables run with
concurrency 1. Each batch reads the scoring index (``ctx.catalog.active``) once, so one
ranking never mixes vectors of two models. A worker that loses partitions forgets what
it held of their positions (``stream.pipeline.positions``): whoever takes them reads
them from the tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faust.types import TP, StreamT

from stream.pipeline.agents import events, items, rerank, statistics
from stream.pipeline.agents.context import Pipeline

if TYPE_CHECKING:
    import faust


def register_agents(app: faust.App, ctx: Pipeline) -> None:
    """Attach the four agents to the app."""
    topics = ctx.topics

    @app.agent(topics.events, name="update_user_interest", concurrency=1)
    async def update_user_interest(stream: StreamT) -> None:
        await events.update_user_interest(ctx, stream)

    @app.agent(topics.item_interactions, name="count_item_popularity", concurrency=1)
    async def count_item_popularity(stream: StreamT) -> None:
        await statistics.count_item_popularity(ctx, app, stream)

    @app.agent(topics.items, name="embed_new_items", concurrency=1)
    async def embed_new_items(stream: StreamT) -> None:
        await items.embed_new_items(ctx, stream)

    @app.agent(topics.rerank_requests, name="rerank_requests", concurrency=1)
    async def rerank_requests(stream: StreamT) -> None:
        await rerank.rerank_requests(ctx, stream)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        interactions = topics.item_interactions.get_topic_name()
        ctx.progress.forget(tp.partition for tp in revoked if tp.topic == ctx.settings.events_topic)
        ctx.owned.difference_update(tp.partition for tp in revoked if tp.topic == interactions)
        for own_writes in ctx.tables.own_writes.values():  # recovery reads them all back
            own_writes.clear()
