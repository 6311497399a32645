"""The replica-wide connection rate limit (services/ingest/rate.py), on a controlled clock."""

from __future__ import annotations

import random
import threading
import time

import pytest

from services.ingest.rate import ConnectRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_goes_at_once_then_attempts_are_spaced_with_jitter() -> None:
    clock = Clock()
    limiter = ConnectRateLimiter(rate_per_s=10, burst=5, rng=random.Random(7), clock=clock)
    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5
    delays = [limiter.reserve() for _ in range(20)]
    # The n-th attempt past the burst waits n intervals (0.1 s), plus jitter within one interval.
    for n, delay in enumerate(delays, start=1):
        assert n * 0.1 - 1e-9 <= delay <= (n + 1) * 0.1 + 1e-9, (n, delay)
    assert len({round(d % 0.1, 6) for d in delays}) > 10, "jittered, not in lockstep"
    assert limiter.delayed == 20


def test_a_quiet_spell_refills_the_burst_but_never_beyond_it() -> None:
    clock = Clock()
    limiter = ConnectRateLimiter(rate_per_s=10, burst=3, rng=random.Random(1), clock=clock)
    for _ in range(10):
        limiter.reserve()
    clock.now += 60  # a minute without attempts
    assert [limiter.reserve() for _ in range(3)] == [0.0] * 3
    assert limiter.reserve() > 0


def test_storm_of_threads_is_held_to_the_rate_and_stops_promptly() -> None:
    limiter = ConnectRateLimiter(rate_per_s=200, burst=10)
    stop = threading.Event()
    admitted: list[bool] = []
    threads = [threading.Thread(target=lambda: admitted.append(limiter.wait(stop))) for _ in range(1000)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(0.5)
    stop.set()  # shutdown: every waiting attempt gives up at once
    elapsed = time.monotonic() - started
    stopped = time.monotonic()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - stopped < 3
    # The burst plus 200/s over the elapsed time got through (jitter only delays); the rest gave up.
    assert len(admitted) == 1000
    assert 10 <= sum(admitted) <= 10 + 200 * elapsed + 1, (sum(admitted), elapsed)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        ConnectRateLimiter(rate_per_s=0)
