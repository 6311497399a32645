"""The clock the alert-router's expiry timer ends silent incidents by: capture time, not wall time.

Incidents end `end_grace_s` after their last active frame, measured in capture time. Frames end them
as they arrive; the timer only has to end those of a camera that went silent. Measuring that silence
with the wall clock ends incidents early whenever the router is behind (a restart reading its backlog,
a detector or broker outage upstream): the frames that continue the incident exist but have not been
read yet. So the timer's "now" for a camera is the newest capture time read from the camera's input
partition (its watermark), and it moves on with the wall clock only once nothing at all arrived on that
partition for `stall_allowance_s` (a camera alone in its partition that went dark must still end).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Mark:
    capture_ms: int  # newest capture time read on this key
    wall_s: float  # wall clock (monotonic seconds) when it was read


@dataclass
class EventClock:
    """Per input partition (or per camera before its partition is known): newest capture time read."""

    stall_allowance_s: float
    marks: dict[Hashable, _Mark] = field(default_factory=dict)

    def observe(self, key: Hashable, capture_ms: int, wall_s: float) -> None:
        """A record with this capture time was read on `key`: any record counts as a sign of life."""
        mark = self.marks.get(key)
        if mark is None:
            self.marks[key] = _Mark(capture_ms, wall_s)
        else:
            mark.capture_ms, mark.wall_s = max(mark.capture_ms, capture_ms), wall_s

    def seed(self, key: Hashable, capture_ms: int, wall_s: float) -> None:
        """Start a key nothing was read on yet (e.g. state recovered after a restart) at `capture_ms`."""
        self.marks.setdefault(key, _Mark(capture_ms, wall_s))

    def now_ms(self, key: Hashable, wall_s: float) -> int | None:
        """Capture-time 'now' on `key`; None when nothing is known about it (then nothing may end)."""
        mark = self.marks.get(key)
        if mark is None:
            return None
        stalled_s = wall_s - mark.wall_s - self.stall_allowance_s
        return mark.capture_ms + (int(stalled_s * 1000) if stalled_s > 0 else 0)
