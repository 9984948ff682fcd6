"""Position records of the exactly-once state, stored beside the entries they account for.

- :class:`StatisticsIntent`: an events partition's statistics intent, in ``user-profiles``;
- :class:`MergedSources`: an owner partition's merged ranges, in each statistics table.

MessagePack like every stored form (``core.formats``); read back with its errors. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from stream.core.formats import decode_struct, encoder


class StatisticsIntent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An events partition's statistics intent, stored before its messages are sent: the
    statistics of the events in ``(after, through]`` are being, or have been, sent."""

    after: int
    through: int


class MergedSources(msgspec.Struct, array_like=True, gc=False):
    """An owner partition's merged position per events partition: the ``through`` of the
    newest statistics message it merged from each (``SourceRange``)."""

    through: dict[int, int]


_intent_decoder = msgspec.msgpack.Decoder(StatisticsIntent)
_merged_decoder = msgspec.msgpack.Decoder(MergedSources)


def encode_intent(after: int, through: int) -> bytes:
    """An events partition's statistics intent (``StatisticsIntent``)."""
    return encoder.encode(StatisticsIntent(after, through))


def decode_intent(data: bytes) -> StatisticsIntent:
    """A stored statistics intent."""
    intent: StatisticsIntent = decode_struct(_intent_decoder, data, "a statistics intent")
    return intent


def encode_merged(through: Mapping[int, int]) -> bytes:
    """An owner partition's merged positions (``MergedSources``)."""
    return encoder.encode(MergedSources(dict(through)))


def decode_merged(data: bytes) -> dict[int, int]:
    """An owner partition's merged positions, by events partition."""
    merged: MergedSources = decode_struct(_merged_decoder, data, "merged positions")
    return merged.through
