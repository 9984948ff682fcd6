"""The events agent's binding of table partitions leaves the stream's current event alone."""

from __future__ import annotations

import pytest

from stream.agents import _bind_table_partition, stream_event_kept


class _Stream:
    """What the binding touches of a Faust stream: its current event."""

    def __init__(self, current_event: object) -> None:
        self.current_event = current_event

    def _set_current_event(self, event: object) -> None:
        self.current_event = event


def test_the_stream_gets_its_own_event_back_after_a_batch_rebinds_it() -> None:
    # take_events reads stream.current_event for the message that arrived during the batch
    # only after the batch: it must be that message's event, not the batch's last user's.
    arrived = object()
    stream = _Stream(arrived)
    with stream_event_kept(stream):  # type: ignore[arg-type]
        for batch_event in (object(), object()):
            _bind_table_partition(stream, batch_event)  # type: ignore[arg-type]
            assert stream.current_event is batch_event
    assert stream.current_event is arrived


def test_the_stream_gets_its_own_event_back_when_a_batch_fails() -> None:
    arrived = object()
    stream = _Stream(arrived)
    with pytest.raises(RuntimeError), stream_event_kept(stream):  # type: ignore[arg-type]
        _bind_table_partition(stream, object())  # type: ignore[arg-type]
        raise RuntimeError("ranking failed")
    assert stream.current_event is arrived
