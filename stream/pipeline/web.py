"""HTTP pages of a worker, on Faust's web server: /metrics, /healthz, /readyz, user profiles.

``/healthz`` is liveness: 200 while the worker makes progress (table recovery included),
503 once the watchdog finds it stalled or an agent crashed (``stream.pipeline.liveness``),
so that an orchestrator restarts it. ``/readyz`` is readiness: 503 until the tables are
recovered, and while the worker is not live.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import faust
from faust.types import TableT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from stream.core.profiles import UserProfile, encode_vector
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.liveness import Liveness
from stream.pipeline.positions import is_internal


def profile_summary(profile: UserProfile) -> dict[str, Any]:
    """A profile as JSON (its vector as base64 float32) plus whether it holds an interest vector."""
    return {
        "vector": None if profile.vector is None else encode_vector(profile.vector),
        "mass": profile.mass,
        "ref_ts": profile.ref_ts,
        "model_id": profile.model_id,
        "counts": profile.counts,
        "n_events": profile.n_events,
        "last_event_ts": profile.last_event_ts,
        "history": [list(entry) for entry in profile.history],
        "pending": [list(entry) for entry in profile.pending],
        "has_interest": profile.has_interest,
        # The events-topic position of the newest event the profile applied (-1: none).
        "input_partition": profile.partition,
        "input_offset": profile.offset,
    }


def register_pages(app: faust.App, ctx: Pipeline, liveness: Liveness) -> None:
    """Mount the worker's pages."""
    registry = ctx.metrics.registry

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        response = web.bytes(generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        body = liveness.report()
        return web.json(body, status=200 if body["live"] else 503)

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        catalog = ctx.catalog
        # The scoring index is only chosen once the catalog is recovered.
        index = catalog.active if recovered else catalog.target
        ready = recovered and liveness.live
        body = {
            "ready": ready,
            "recovered": recovered,
            "live": liveness.live,
            "items": index.active_count,
            "model": index.model_id,
            "configured_model": catalog.model_id,
            "reencode_pending": len(catalog.missing()) if recovered else None,
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/users/{user_id}/profile")
    async def user_profile(web: View, request: Request, user_id: str) -> Response:
        # Position records share the table under keys no user id can take.
        raw = None if is_internal(user_id) else ctx.tables.user_profiles.get(user_id)
        if raw is not None:
            return web.json(profile_summary(UserProfile.from_bytes(raw)))
        if FORWARDED not in request.headers:
            found = await profile_elsewhere(app, ctx.tables.user_profiles, request.url.path)
            if found is not None:
                return web.json(found)
        return web.json({"error": f"no profile for user {user_id!r}"}, status=404)


FORWARDED = "X-Streamrank-Forwarded"


async def profile_elsewhere(app: faust.App, table: TableT, path: str) -> dict[str, Any] | None:
    """Ask the other workers for a profile this one does not hold (None: none holds it).

    A profile lives in the partition its user's events arrived on, which the producers'
    partitioner chose: the user id alone does not tell which worker holds it (Faust's
    ``table_route`` hashes the serialised key), so each other worker is asked in turn.
    """
    own = (app.conf.canonical_url.host, app.conf.canonical_url.port)
    hosts = app.router.table_metadata(table.name)
    for host in hosts:
        url = URL(host)
        if (url.host, url.port) == own:
            continue
        try:
            async with app.http_client.get(
                str(url.with_path(path)), headers={FORWARDED: "1"}, timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                if response.status == 200:
                    found: dict[str, Any] = await response.json()
                    return found
        except (aiohttp.ClientError, TimeoutError):
            continue  # a worker leaving: the others may still answer
    return None
