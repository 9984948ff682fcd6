"""The worker's ranking threads (numpy's BLAS, torch's int8 kernels) follow RANKING_THREADS."""

from __future__ import annotations

import threading

import numpy  # noqa: F401 - loads the BLAS library whose threads are set
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from stream.pipeline.worker import limit_ranking_threads


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


def test_ranking_threads_set_torchs_threads_on_the_event_loops_thread_only() -> None:
    """The int8 products run on this thread; the encoder's thread keeps torch's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as the encoder does, before the limit
    other: list[int] = []
    try:
        with threadpool_limits(limits=2, user_api="blas"), threadpool_limits(limits=2, user_api="openmp"):
            limit_ranking_threads(1)
            assert torch.get_num_threads() == 1
            encoder = threading.Thread(target=lambda: other.append(torch.get_num_threads()))
            encoder.start()
            encoder.join()
    finally:
        torch.set_num_threads(before)
    assert other == [2]
