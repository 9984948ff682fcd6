"""Similarity products of query vectors with the catalog's vectors: float32, and int8
with the catalog matrix packed for fbgemm.

A batch's similarity rows (a few query vectors against every catalog item) are the
largest single cost of the events agent, and in float32 they are bound by arithmetic once
a product has four rows or more (OpenBLAS packs and multiplies the whole 9,742 x 384
MovieLens matrix: about 1 ms for four rows on one core). With the catalog as int8 weights
(one scale for the matrix, as the rows are unit vectors) and each batch's queries
quantised on the fly, fbgemm's kernels compute the same products two to four times
faster, within 0.005 of the float cosine.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

# Up to this many query rows, one matrix-vector product per row: a matrix product first
# packs the whole catalog matrix into the BLAS library's panel layout, which for two or
# three rows costs more than the products themselves (OpenBLAS, a 9,742 x 384 catalog:
# 1.9 ms for two rows at once, 0.6 ms as two matrix-vector products).
_FEW_ROWS = 3
# Repack once the rows changed or appended since packing exceed this share of the packed
# ones: they are multiplied in float32 until then, and packing costs tens of milliseconds.
_STALE_SHARE = 8
_MIN_STALE = 256


def similarity_product(queries: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``queries @ columns`` in float32: (k, dim) unit rows against (dim, n) catalog columns
    (a transposed view of the rows serves as well)."""
    if len(queries) <= _FEW_ROWS:
        out = np.empty((len(queries), columns.shape[1]), dtype=np.result_type(queries, columns))
        for i, query in enumerate(queries):
            np.matmul(query, columns, out=out[i])
        return out
    return queries @ columns


def int8_supported() -> bool:
    """Whether this torch build has the quantized CPU kernels (fbgemm on x86, qnnpack on ARM)."""
    try:
        return torch.backends.quantized.engine != "none" and hasattr(torch.ops.quantized, "linear_dynamic")
    except (AttributeError, RuntimeError):
        return False


class Int8Catalog:
    """Products of float32 queries with the catalog's vectors, the vectors held in int8.

    Keeps up with the catalog without repacking on every change: rows appended since
    packing and rows whose vectors changed are multiplied in float32
    (:func:`similarity_product`), and the matrix is packed again once they are many.
    """

    def __init__(self) -> None:
        self._packed: torch.ScriptObject | None = None
        self._rows = 0  # rows packed
        self._changed: set[int] = set()  # packed rows whose vectors changed since

    @property
    def packed_rows(self) -> int:
        """How many catalog rows the packed matrix holds (0 before the first product)."""
        return self._rows

    def changed(self, row: int) -> None:
        """Note that the vector of ``row`` changed (or was cleared)."""
        if row < self._rows:
            self._changed.add(row)

    def product(self, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """``queries @ vectors.T``, the packed rows in int8.

        Args:
            queries: (k, dim) float32 unit vectors.
            vectors: (n, dim) the catalog's vectors as rows.
        """
        n = len(vectors)
        if n == 0:
            return np.zeros((len(queries), 0), dtype=np.float32)
        packed = self._packed
        stale = (n - self._rows) + len(self._changed)
        if packed is None or n < self._rows or stale > max(self._rows // _STALE_SHARE, _MIN_STALE):
            packed = self._pack(vectors)
        # Activations are quantised with reduce_range: without it, AVX2's 16-bit
        # intermediate sums saturate on vectors with large components (errors to 0.05).
        head = torch.ops.quantized.linear_dynamic(torch.from_numpy(queries), packed, True).numpy()
        if n == self._rows and not self._changed:
            return head
        out = np.empty((len(queries), n), dtype=np.float32)
        out[:, : self._rows] = head
        if n > self._rows:
            out[:, self._rows :] = similarity_product(queries, vectors[self._rows : n].T)
        if self._changed:
            rows = np.fromiter(self._changed, dtype=np.int64, count=len(self._changed))
            out[:, rows] = similarity_product(queries, vectors[rows].T)
        return out

    def _pack(self, vectors: np.ndarray) -> torch.ScriptObject:
        weights = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        scale = max(float(weights.abs().max()), 1e-12) / 127.0
        with warnings.catch_warnings():
            # torch announces the move of its quantized tensors to torchao; these still work.
            warnings.simplefilter("ignore")
            quantised = torch.quantize_per_tensor(weights, scale, 0, torch.qint8)
        self._packed = torch.ops.quantized.linear_prepack(quantised, None)
        self._rows = len(vectors)
        self._changed.clear()
        return self._packed
