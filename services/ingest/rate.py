"""A process-wide bound on camera connection attempts, so thousands of failing cameras cannot turn a
replica into a reconnect storm (issue 20, item 7): attempts beyond the rate queue for a later slot,
each slot jittered so queued cameras do not connect in lockstep either."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class ConnectRateLimiter:
    """At most `rate_per_s` connection attempts a second on average, `burst` at once after a quiet spell."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.interval_s = 1.0 / rate_per_s
        self.burst = burst
        self.rng = rng or random.Random()
        self.clock = clock
        self._tat = clock()  # "theoretical arrival time" of the generic cell rate algorithm
        self._lock = threading.Lock()
        self.delayed = 0  # attempts that had to wait (a storm indicator)

    def reserve(self) -> float:
        """Claim the next slot; returns how long the caller must wait before connecting (0 = now)."""
        with self._lock:
            now = self.clock()
            tat = max(self._tat, now)
            self._tat = tat + self.interval_s
            delay = tat - now - (self.burst - 1) * self.interval_s
            if delay <= 1e-9:  # float rounding at the burst's edge
                return 0.0
            self.delayed += 1
        return delay + self.rng.uniform(0, self.interval_s)

    def wait(self, stop: threading.Event) -> bool:
        """Wait for a slot; False when `stop` was set meanwhile (the caller is shutting down)."""
        delay = self.reserve()
        if delay <= 0:
            return not stop.is_set()
        return not stop.wait(delay)
