"""Errors of the encoder service, each with the HTTP status and metric reason it maps to.

A closed set, mapped to status codes in one place (:data:`STATUS`), so that the service
answers every failure with a JSON body ``{"error", "error_type"}`` and never a traceback.
"""

from __future__ import annotations

# Bounded values of the service's ``streamrank_encoder_errors_total{reason}``.
REASONS = (
    "invalid_json",
    "invalid_request",
    "too_many_texts",
    "body_too_large",
    "overloaded",
    "not_ready",
    "inference",
    "cancelled",
    "internal",
)


class EncoderError(Exception):
    """Root of every error the encoder service raises on purpose."""

    reason = "inference"
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(EncoderError):
    """The request body is not a valid ``/embed`` request."""

    reason = "invalid_request"
    status = 400


class InvalidJson(InvalidRequest):
    """The request body is not JSON."""

    reason = "invalid_json"


class TooManyTexts(EncoderError):
    """More texts than ``max_texts_per_request``."""

    reason = "too_many_texts"
    status = 413


class BodyTooLarge(EncoderError):
    """A body larger than ``max_body_bytes``."""

    reason = "body_too_large"
    status = 413


class Overloaded(EncoderError):
    """The queue holds ``max_queue_texts`` already: back off and retry."""

    reason = "overloaded"
    status = 429


class NotReady(EncoderError):
    """The model is still loading, or the service is shutting down."""

    reason = "not_ready"
    status = 503


class InferenceFailed(EncoderError):
    """The model raised while encoding a batch."""

    reason = "inference"
    status = 500
