"""Fixtures of the deployment checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.services import EncoderService


@pytest.fixture(scope="module")
def encoder_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EncoderService]:
    """A running ``streamrank encode-server`` with the bundled model, stopped by PID.

    For the live Prometheus test once the encoder service is in this tree: it then scrapes
    this as job streamrank-encoder and points its worker at ``encoder_service.url``.
    """
    service = EncoderService(tmp_path_factory.mktemp("encoder"), {"STREAMRANK_ENCODER_DEVICE": "cpu"})
    try:
        yield service.start()
    finally:
        service.stop()
