"""Bounds and keys of an input message, checked around its decoder (``core.contracts``).

- :func:`check_bounds`: size and nesting depth, before any parser runs: msgspec and
  Python's json recurse into nested values, and 200,000 levels exhaust the interpreter's
  stack.
- :func:`check_key`: the message key is the id that partitions the topic; a keyless or
  mismatched event would split its user's profile across partitions.

Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import ClassVar, Protocol

from stream.errors import InvalidMessage

# The delta of each byte to the nesting depth: +1 opens an array or object, -1 closes one.
_DEPTH_DELTA = [1 if byte in b"[{" else -1 if byte in b"]}" else 0 for byte in range(256)]
_NOT_BRACKETS = bytes(b for b in range(256) if _DEPTH_DELTA[b] == 0)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_EXCERPT_CHARS = 64


def excerpt(text: str) -> str:
    """``text``, cut to its first characters when it is long (for error details).

    Details name what was wrong, not all of it: an id or a type may be a megabyte long.
    """
    return text if len(text) <= _EXCERPT_CHARS else f"{text[:_EXCERPT_CHARS]}..."


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON bytes (0 for a scalar), without
    parsing: brackets inside strings are not counted.

    Linear, in C loops only (no Python loop per byte) and without recursion: escapes are
    dropped first (``\\"`` is no quote), then every other piece between quotes is outside
    the strings. An unterminated string's content is not counted.
    """
    text = _ESCAPE.sub(b"", raw) if b"\\" in raw else raw
    outside = b"".join(text.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_DELTA.__getitem__, brackets), initial=0))


def check_bounds(raw: bytes | None, max_bytes: int, max_depth: int) -> None:
    """Reject a value too large or too deeply nested to be parsed safely; run it before
    the decoders.

    Cheap for the ~100-byte events of the hot path: the precise depth (:func:`json_depth`)
    is computed only when the value holds more brackets than ``max_depth``.

    Raises:
        InvalidMessage: ``message_too_large`` or ``nesting_too_deep``.
    """
    if raw is None:
        return  # an empty value: the decoders name it
    if len(raw) > max_bytes:
        raise InvalidMessage("message_too_large", f"value is {len(raw)} bytes, limit {max_bytes}")
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    depth = json_depth(raw)
    if depth > max_depth:
        raise InvalidMessage("nesting_too_deep", f"value is nested {depth} levels deep, limit {max_depth}")


class KeyedRecord(Protocol):
    """A decoded input record: ``key_field`` names the id its message must be keyed by."""

    key_field: ClassVar[str]


def check_key(key: bytes | None, record: KeyedRecord) -> None:
    """Check that a message's key is its record's id (``record.key_field``): the key picks
    the partition, and the worker that owns it keeps the id's state.

    Raises:
        InvalidMessage: ``missing_key`` (none, or empty) or ``key_mismatch``.
    """
    field = record.key_field
    expected: str = getattr(record, field)
    if not key:
        raise InvalidMessage(
            "missing_key", f"the message has no key; expected its {field} {excerpt(expected)!r}"
        )
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMessage("key_mismatch", f"the key is not UTF-8; expected the {field}") from None
    if text != expected:
        raise InvalidMessage(
            "key_mismatch", f"key {excerpt(text)!r} is not the payload's {field} {excerpt(expected)!r}"
        )
