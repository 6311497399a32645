"""The alert-router's expiry clock: capture time read per partition, wall time only after a stall."""

from __future__ import annotations

from services.alert_router.event_clock import EventClock


def test_event_clock_follows_capture_time_and_runs_on_only_after_a_stall() -> None:
    clock = EventClock(stall_allowance_s=60)
    assert clock.now_ms(3, wall_s=0) is None  # nothing read: nothing may end
    clock.observe(3, capture_ms=1_000_000, wall_s=100)
    # The router read nothing for 50 s (upstream restarting): capture time stands still.
    assert clock.now_ms(3, wall_s=150) == 1_000_000
    # A backlog read fast: capture time moves with the records, not with the wall clock.
    clock.observe(3, capture_ms=1_002_000, wall_s=151)
    clock.observe(3, capture_ms=1_001_000, wall_s=152)  # an older record never moves it back
    assert clock.now_ms(3, wall_s=152) == 1_002_000
    # Nothing at all for longer than the allowance (the camera went dark): time runs on from there.
    assert clock.now_ms(3, wall_s=152 + 60 + 15) == 1_002_000 + 15_000
    clock.seed(3, capture_ms=0, wall_s=0)  # seeding never overrides what was read
    assert clock.now_ms(3, wall_s=152) == 1_002_000
    clock.seed("camera:a", capture_ms=5_000, wall_s=10)
    assert clock.now_ms("camera:a", wall_s=10 + 61) == 6_000
