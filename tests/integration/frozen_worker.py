"""``streamrank worker`` whose rerank agent freezes on a request of user ``FROZEN_USER`` and
crashes on one of ``CRASHING_USER``.

Run as ``python -m tests.integration.frozen_worker`` by ``test_liveness.py``. Frozen, the
agent waits forever: the request stays unacknowledged and the requests behind it wait.
Crashed, Faust's supervisor restarts it. Everything else is the real worker.
"""

from __future__ import annotations

import asyncio
import sys

from faust.types import StreamT

from stream.pipeline.agents import rerank
from stream.pipeline.agents.context import Pipeline
from stream.tools import cli

FROZEN_USER = "user-7f3a-frozen"
CRASHING_USER = "user-c4e1-crashing"


async def freezing_rerank_requests(ctx: Pipeline, stream: StreamT) -> None:
    """Acknowledge every request, except that one of ``FROZEN_USER`` never ends and one of
    ``CRASHING_USER`` raises."""
    async for event in stream.events():
        value = event.message.value or b""
        if f'"{FROZEN_USER}"'.encode() in value:
            await asyncio.Event().wait()  # never set
        if f'"{CRASHING_USER}"'.encode() in value:
            raise RuntimeError(f"cannot rank for {CRASHING_USER}")  # the message quotes an id


if __name__ == "__main__":
    rerank.rerank_requests = freezing_rerank_requests  # looked up by the agent at each start
    sys.exit(cli.main(["worker"]))
