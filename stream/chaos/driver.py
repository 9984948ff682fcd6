"""A rate-limited producer of a scenario's messages, run in a thread beside the faults.

The scenario's main thread watches ``sent`` and injects its faults at set points of the
stream, while this thread keeps the load steady. The producer is patient: a frozen
broker must delay its sends, not fail them (whatever it does send twice is in the topic,
and the reference is computed from what the topic holds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from stream.config import Settings
from stream.errors import StreamrankError
from stream.kafka.admin import producer
from stream.tools.replay import RateLimiter

# (topic, key, value) of one message; a None value is sent as a null value.
Message = tuple[str, bytes | None, bytes | None]


class Driver(threading.Thread):
    """Sends ``messages`` at ``rate`` per second (0: as fast as it goes), then flushes.

    Args:
        patience_s: how long one send may wait for the broker (a frozen broker included).
    """

    def __init__(
        self, settings: Settings, messages: Sequence[Message], rate: float, patience_s: float = 60.0
    ) -> None:
        super().__init__(daemon=True, name="chaos-driver")
        self.settings = settings
        self.messages = messages
        self.rate = rate
        self.patience_ms = int(patience_s * 1000)
        self.sent = 0
        self.failed = 0
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        self.started_at = time.time()
        kafka = producer(
            self.settings,
            request_timeout_ms=self.patience_ms,
            delivery_timeout_ms=self.patience_ms * 2 + 5000,
            max_block_ms=self.patience_ms,
            # One request in flight: a retried send cannot overtake the next (a user's order).
            max_in_flight_requests_per_connection=1,
        )
        try:
            limiter = RateLimiter(self.rate)
            for topic, key, value in self.messages:
                if self.stopping.is_set():
                    break
                limiter.wait()
                kafka.send(topic, key=key, value=value).add_errback(self._failed)
                self.sent += 1
            kafka.flush()
        except BaseException as exc:  # reported by join_checked
            self.error = exc
        finally:
            kafka.close()
            self.finished_at = time.time()

    def _failed(self, _exc: Any) -> None:
        self.failed += 1

    def wait_sent(self, count: int, timeout_s: float = 600.0) -> None:
        """Block until ``count`` messages are handed to the producer (or the driver ends)."""
        deadline = time.monotonic() + timeout_s
        while self.sent < count and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def join_checked(self, timeout_s: float = 600.0) -> None:
        """Wait for the end of the stream; raise what the producer raised."""
        self.join(timeout_s)
        if self.is_alive():
            raise StreamrankError(f"the driver did not finish in {timeout_s}s ({self.sent} sent)")
        if self.error is not None:
            raise StreamrankError(f"the driver failed after {self.sent} messages: {self.error}")
