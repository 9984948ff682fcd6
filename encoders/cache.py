"""Content-hash cache of vectors: identical texts are encoded once per model.

Keys are ``(model_id, SHA-256 of the UTF-8 text)``, so a vector is only ever returned for the
model that produced it, and long texts cost 32 bytes of key. Bounded LRU; thread-safe, because
the in-process encoder fills it from its executor thread while the encoder service reads it on
its event loop. Imports no torch.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

__all__ = ["VectorCache", "text_key"]


def text_key(text: str) -> bytes:
    """SHA-256 of a text's UTF-8 bytes (lone surrogates kept, so every ``str`` has a key)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class VectorCache:
    """A bounded LRU map ``(model_id, text) -> float32 vector``.

    Stored vectors are private read-only copies: a hit returns exactly the bytes that were
    stored, and callers cannot change them.
    """

    def __init__(self, max_entries: int) -> None:
        """Create an empty cache.

        Args:
            max_entries: Most vectors kept; the least recently used go first. 0 keeps none.

        Raises:
            ValueError: If ``max_entries`` is negative.
        """
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f"max_entries must be an int >= 0, got {max_entries!r}")
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, model_id: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Look texts up.

        Args:
            model_id: The vector space asked for.
            texts: Texts to look up.

        Returns:
            One entry per text, in order: the stored (read-only) vector, or None on a miss.
        """
        keys = [(model_id, text_key(t)) for t in texts]
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                vector = self._entries.get(key)
                if vector is not None:
                    self._entries.move_to_end(key)
                out.append(vector)
        return out

    def put_many(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (copies), evicting the least recently used beyond capacity.

        Raises:
            ValueError: If ``vectors`` does not have one row per text.
        """
        if len(vectors) != len(texts):
            raise ValueError(f"got {len(vectors)} vectors for {len(texts)} texts")
        if self._max == 0:
            return
        rows = []
        for row in np.asarray(vectors, dtype=np.float32):
            copy = row.copy()
            copy.flags.writeable = False
            rows.append(copy)
        keys = [(model_id, text_key(t)) for t in texts]
        with self._lock:
            for key, row in zip(keys, rows, strict=True):
                self._entries[key] = row
                self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
