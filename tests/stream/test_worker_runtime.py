"""The worker's process-wide runtime settings: BLAS threads (RANKING_THREADS) and its
event loop (EVENT_LOOP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy  # noqa: F401 - loads the BLAS library whose threads are set
import pytest
import uvloop
from threadpoolctl import threadpool_info, threadpool_limits

from stream.worker import limit_ranking_threads, use_event_loop


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_ranking_threads_set_numpys_blas_threads() -> None:
    with threadpool_limits(limits=2, user_api="blas"):  # restores the test process's own
        assert _blas_threads()
        limit_ranking_threads(1)
        assert set(_blas_threads()) == {1}


def test_zero_leaves_the_blas_default() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        limit_ranking_threads(0)
        assert _blas_threads() == before


@pytest.fixture
def restore_loop_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


@pytest.mark.parametrize(("name", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_event_loop_setting_picks_the_loop_of_new_loops(
    name: str, loop_type: type, restore_loop_policy: None
) -> None:
    use_event_loop(name)
    loop = asyncio.new_event_loop()  # as Faust's worker and the consumer's thread create theirs
    try:
        assert isinstance(loop, loop_type)
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()
