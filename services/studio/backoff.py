"""The pause every worker of a batch shares after a transient backend failure, and which failures are transient.

One ``BackoffGate`` per job: a dead or busy backend sees a trickle of probes with jittered exponential
backoff, not a retry storm from every worker at once.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from services.errors import BackendTimeout, Busy, InBandError, ServerError, StreamInterrupted, Unreachable

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Busy, ServerError, Unreachable, BackendTimeout,
                                                      StreamInterrupted, InBandError)


class BackoffGate:
    """A pause shared by every worker of a batch: one transient failure slows them all down together."""

    def __init__(self, base_s: float = 0.5, max_s: float = 8.0, clock: Any = time.monotonic) -> None:
        self.base_s, self.max_s = base_s, max_s
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()

    def delay_for(self, attempt: int) -> float:
        """Exponential in the attempt number, with full jitter in its upper half."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        return ceiling * random.uniform(0.5, 1.0)

    def trip(self, attempt: int) -> float:
        delay = self.delay_for(attempt)
        with self._lock:
            self._until = max(self._until, self._clock() + delay)
        return delay

    def remaining(self) -> float:
        with self._lock:
            return max(self._until - self._clock(), 0.0)

    def wait(self, cancelled: threading.Event | None = None) -> bool:
        """Sleep out the pause; False when cancelled meanwhile."""
        while (left := self.remaining()) > 0:
            if cancelled is not None:
                if cancelled.wait(min(left, 0.25)):
                    return False
            else:
                time.sleep(min(left, 0.25))
        return not (cancelled is not None and cancelled.is_set())
