"""Pure pieces of delivery: retry delays, what a response means, and which offsets are safe to commit."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

# Worth retrying: the endpoint is overloaded, restarting or timed out. Other 4xx mean the request itself
# is refused (bad URL, wrong secret): retrying cannot help, so it goes to the dead-letter topic at once.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def backoff_delay(attempt: int, initial_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1 = first retry): exponential, capped, with "equal jitter"
    (half fixed, half random) so many failing deliveries do not retry in lockstep."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap_s, initial_s * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS


@dataclass
class OffsetTracker:
    """Per partition, the offsets still being delivered; the committable offset is the lowest one still
    pending (or one past the highest seen), so a commit never skips an undelivered alert."""

    _pending: dict[tuple[str, int], dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    _next: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, topic: str, partition: int, offset: int, deliveries: int) -> None:
        key = (topic, partition)
        self._next[key] = max(self._next.get(key, 0), offset + 1)
        if deliveries > 0:
            self._pending[key][offset] = deliveries

    def done(self, topic: str, partition: int, offset: int) -> None:
        pending = self._pending.get((topic, partition))
        if pending is None or offset not in pending:
            return  # its partition was revoked meanwhile
        pending[offset] -= 1
        if pending[offset] <= 0:
            del pending[offset]

    def pending_count(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def committable(self) -> dict[tuple[str, int], int]:
        result = {}
        for key, next_offset in self._next.items():
            pending = self._pending.get(key)
            result[key] = min(pending) if pending else next_offset
        return result

    def forget(self, keys: set[tuple[str, int]]) -> None:
        for key in keys:
            self._pending.pop(key, None)
            self._next.pop(key, None)
