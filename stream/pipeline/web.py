"""HTTP pages of a worker, on Faust's web server: /metrics, /healthz, user profiles."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.core.profiles import UserProfile, encode_vector
from stream.pipeline.agents.context import Pipeline


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
    }


def register_pages(app: faust.App, ctx: Pipeline) -> None:
    """Mount the worker's pages."""
    registry = ctx.metrics.registry

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        response = web.bytes(generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        catalog = ctx.catalog
        # The scoring index is only chosen once the catalog is recovered.
        index = catalog.active if recovered else catalog.target
        body = {
            "ready": recovered,
            "items": index.active_count,
            "model": index.model_id,
            "configured_model": catalog.model_id,
            "reencode_pending": len(catalog.missing()) if recovered else None,
        }
        return web.json(body, status=200 if recovered else 503)

    @app.page("/users/{user_id}/profile")
    @app.table_route(table=ctx.tables.user_profiles, match_info="user_id")
    async def user_profile(web: View, request: Request, user_id: str) -> Response:
        raw = ctx.tables.user_profiles.get(user_id)
        if raw is None:
            return web.json({"error": f"no profile for user {user_id!r}"}, status=404)
        return web.json(profile_summary(UserProfile.from_bytes(raw)))
