"""The worker's BLAS threads follow RANKING_THREADS."""

from __future__ import annotations

import numpy  # noqa: F401 - loads the BLAS library whose threads are set
from threadpoolctl import threadpool_info, threadpool_limits

from stream.worker import limit_ranking_threads


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
