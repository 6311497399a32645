"""Frame choice by time: of a stream of timestamped items, the one nearest each sampling tick."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")


@dataclass(slots=True)
class _Candidate(Generic[ItemT]):
    tick: int
    distance_us: int
    item: ItemT


class NearestTickSelector(Generic[ItemT]):
    """Streams items with timestamps and lets through, for each tick origin + k*period, the nearest one.

    An item is let through at once when no later item can be nearer (it lies within half the usual
    item spacing of its tick); otherwise it is held until the next item shows whether it was nearest.
    """

    def __init__(self, period_us: int) -> None:
        if period_us <= 0:
            raise ValueError(f"sampling period must be positive, got {period_us} us")
        self.period_us = period_us
        self.reset()

    def reset(self) -> None:
        self._origin_us: int | None = None
        self._last_emitted_tick: int | None = None
        self._held: _Candidate[ItemT] | None = None
        self._last_pts_us: int | None = None
        self._spacing_us: int | None = None
        self._untimed_first_emitted = False

    def offer_untimed(self, item: ItemT) -> list[ItemT]:
        """An item with no timestamp at all: only the very first one is used (it starts the timeline)."""
        if self._origin_us is None and not self._untimed_first_emitted:
            self._untimed_first_emitted = True
            return [item]
        return []

    def offer(self, pts_us: int, item: ItemT) -> list[ItemT]:
        emitted: list[ItemT] = []
        if self._origin_us is None:
            self._origin_us = pts_us
            if self._untimed_first_emitted:
                self._last_emitted_tick = 0  # the untimed first item already served tick 0
        if self._last_pts_us is not None and pts_us > self._last_pts_us:
            self._spacing_us = pts_us - self._last_pts_us
        self._last_pts_us = pts_us
        tick = math.floor((pts_us - self._origin_us + self.period_us // 2) / self.period_us)
        distance_us = abs(pts_us - (self._origin_us + tick * self.period_us))
        held = self._held
        if held is not None:
            if held.tick == tick and distance_us < held.distance_us:
                held.distance_us, held.item = distance_us, item
                return self._emit_if_nearest_possible(emitted)
            # The held one was the nearest for its tick: items now move away from it or past it.
            self._release_held(emitted)
        if self._last_emitted_tick is not None and tick <= self._last_emitted_tick:
            return emitted  # this tick is served already
        self._held = _Candidate(tick, distance_us, item)
        return self._emit_if_nearest_possible(emitted)

    def flush(self) -> list[ItemT]:
        """The stream ends: let the held item through if the stream reached its tick, else drop it."""
        emitted: list[ItemT] = []
        held = self._held
        if held is None:
            return emitted
        assert self._origin_us is not None and self._last_pts_us is not None
        tick_us = self._origin_us + held.tick * self.period_us
        if self._last_pts_us + (self._spacing_us or 0) // 2 >= tick_us:
            self._release_held(emitted)
        else:
            self._held = None  # that tick lies beyond the end of the stream
        return emitted

    @property
    def held_item(self) -> ItemT | None:
        return self._held.item if self._held is not None else None

    def replace_held(self, item: ItemT | None) -> None:
        """Swap the held item for an equivalent one (same timestamp), or drop it with None."""
        if self._held is not None:
            if item is None:
                self._held = None
            else:
                self._held.item = item

    def _emit_if_nearest_possible(self, emitted: list[ItemT]) -> list[ItemT]:
        held = self._held
        if held is not None and self._spacing_us is not None and 2 * held.distance_us <= self._spacing_us:
            self._release_held(emitted)
        return emitted

    def _release_held(self, emitted: list[ItemT]) -> None:
        assert self._held is not None
        emitted.append(self._held.item)
        self._last_emitted_tick = self._held.tick
        self._held = None
