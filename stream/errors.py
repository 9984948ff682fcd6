"""streamrank's error tree: one root, a bounded set of dead-letter reasons."""

from __future__ import annotations

# The closed set of reasons a message can be dead-lettered for; used as a metric label.
REASONS = (
    # Checked before any parser runs: the decoders recurse into nested values.
    "message_too_large",
    "nesting_too_deep",
    "undecodable",
    "invalid_json",
    "missing_field",
    "wrong_type",
    "invalid_value",
    # A time field out of the contracts' range (``core.contracts``), e.g. milliseconds.
    "invalid_timestamp",
    "unknown_event_type",
    "text_too_long",
    "too_many_candidates",
    # The message's key is not the id that partitions its topic (user_id or item_id).
    "missing_key",
    "key_mismatch",
    # Not the message's fault: its batch raised while being processed (a defect).
    "processing_failed",
)


class StreamrankError(Exception):
    """Root of every error streamrank raises on purpose."""


class InvalidMessage(StreamrankError):
    """An input message that cannot be processed; it goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}; add it to REASONS")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerUnavailable(StreamrankError):
    """The Kafka broker could not be reached or did not answer in time."""


class DataNotFound(StreamrankError):
    """A dataset directory is missing the files a command needs."""


class EncoderUnavailable(StreamrankError):
    """The encoder service could not encode: down, timing out, refusing, or circuit open."""


class EncoderModelMismatch(EncoderUnavailable):
    """The encoder service answered with vectors of another model than the configured one."""
