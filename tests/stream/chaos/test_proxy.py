"""The relay in front of the encoder service: passes, answers 503, resets when the service is gone."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from stream.chaos.proxy import FaultyProxy
from stream.kafka.embedded import free_port


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers a POST with its own body."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def post(url: str, body: bytes) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_relay_passes_then_answers_503_then_passes_again(
    backend: http.server.ThreadingHTTPServer,
) -> None:
    with FaultyProxy(backend.server_address[1]) as proxy:
        assert post(proxy.url + "/embed", b"hello") == (200, b"hello")
        proxy.set_mode("503")
        status, body = post(proxy.url + "/embed", b"x" * 100_000)
        assert status == 503 and b"unavailable" in body
        assert proxy.answered_503 == 1
        proxy.set_mode("pass")
        assert post(proxy.url + "/embed", b"again") == (200, b"again")


def test_a_service_that_is_gone_drops_the_callers_connection() -> None:
    with FaultyProxy(free_port()) as proxy:  # nothing listens there
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(proxy.url + "/embed", b"hello")
        assert proxy.refused == 1
