"""``rerank_requests``: reorder a request's candidates for its user.

Read-your-writes: a request is keyed like its user's events, so it is read from the
partition of the same number of ``rerank-requests``. Before it is answered, the events
of that partition up to the events topic's end when the request was read are applied
(``EventsProgress.wait_applied``), bounded by ``read_your_writes_timeout_s``: a client
that sends events and then a request at once is answered from a profile with them.
"""

from __future__ import annotations

import time

import faust
from faust.types import TP, EventT, StreamT

from stream.core.contracts import RerankRequest, decode_rerank_request
from stream.core.ranking import rank_candidates
from stream.pipeline.agents.context import Pipeline, decode_batch, process_bisecting, send_list


async def rerank_requests(ctx: Pipeline, stream: StreamT) -> None:
    """Answer each request with its candidates ranked for the user, one at a time.

    A malformed request, or one whose ranking raises, is dead-lettered; the agent goes on.
    """
    settings, metrics = ctx.settings, ctx.metrics
    async for event in stream.events():
        started = time.perf_counter()
        good = await decode_batch(
            ctx, [event], lambda raw: decode_rerank_request(raw, settings.max_candidates)
        )
        if good:
            await wait_for_earlier_events(ctx, stream.app, event)
        await process_bisecting(ctx, good, lambda requests: answer_requests(ctx, requests))
        metrics.batch_processing.labels("rerank_requests").observe(time.perf_counter() - started)


async def answer_requests(ctx: Pipeline, requests: list[tuple[RerankRequest, EventT]]) -> None:
    """Rank each request's candidates for its user and send the list to ``recommendations``."""
    for request, event in requests:
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


async def wait_for_earlier_events(ctx: Pipeline, app: faust.App, event: EventT) -> None:
    """Wait (bounded) until the events of the request's partition produced before it are applied.

    "Before it" is the events partition's end, asked of the broker once the request is
    read (one round trip: the end the consumer last fetched can be older, as a partition
    with records still buffered is left out of fetches). A partition this worker has
    applied nothing of since it took it may have nothing left to apply: after one timeout
    at an unchanged end, its requests stop waiting until the end moves.
    """
    timeout_s = ctx.settings.read_your_writes_timeout_s
    if timeout_s <= 0:
        return
    partition = event.message.partition
    tp = TP(ctx.settings.events_topic, partition)
    end = (await app.consumer.highwaters(tp)).get(tp, 0)
    progress = ctx.progress
    if not end or progress.applied.get(partition, -1) >= end - 1:
        return
    if partition not in progress.applied and progress.settled.get(partition) == end:
        return
    ctx.metrics.read_your_writes_waits.inc()
    if not await progress.wait_applied(partition, end - 1, timeout_s):
        ctx.metrics.read_your_writes_timeouts.inc()
        if partition not in progress.applied:
            progress.settled[partition] = end
