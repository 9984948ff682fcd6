"""``rerank_requests``: reorder a request's candidates for its user."""

from __future__ import annotations

import time

from faust.types import StreamT

from stream.core.contracts import decode_rerank_request
from stream.core.ranking import rank_candidates
from stream.errors import InvalidMessage
from stream.pipeline.agents.context import Pipeline, send_dead_letter, send_list


async def rerank_requests(ctx: Pipeline, stream: StreamT) -> None:
    """Answer each request with its candidates ranked for the user, one at a time."""
    settings, metrics = ctx.settings, ctx.metrics
    async for event in stream.events():
        started = time.perf_counter()
        try:
            request = decode_rerank_request(event.message.value, settings.max_candidates)
        except InvalidMessage as exc:
            await send_dead_letter(ctx, event, exc)
            continue
        index = ctx.catalog.active
        profile = ctx.load_profile(request.user_id)
        now = request.ts or (profile.last_event_ts if profile else None) or event.message.timestamp
        ranked = rank_candidates(
            index.user_view(profile, ctx.ranking.history_items, ctx.ranking.covisit_items),
            index.view(),
            request.candidates,
            index.rows_of(request.candidates),
            now=now,
            config=ctx.ranking,
            k=request.k,
        )
        await send_list(
            ctx,
            index.model_id,
            request.user_id,
            ranked,
            mode="rerank",
            event_ts=request.ts,
            message_ts=[event.message.timestamp],
            profile=profile,
            request_id=request.request_id,
        )
        metrics.batch_processing.labels("rerank_requests").observe(time.perf_counter() - started)
