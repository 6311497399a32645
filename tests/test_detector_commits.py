"""Which processed records the detector may commit: never past a frame of the same partition that is
still queued or in flight (a poison record dead-lettered at once finishes before the frames ahead of it)."""

from __future__ import annotations

from confluent_kafka import Message

from libs.kafka import Incoming
from services.detector.batching import committable


def message(partition: int, offset: int) -> Message:
    return Message(topic="cctv.frames.v1", partition=partition, offset=offset, key=b"cam", value=b"")


def pending(partition: int, offset: int) -> Incoming:
    return Incoming(
        topic="cctv.frames.v1",
        partition=partition,
        offset=offset,
        key=b"cam",
        value={},
        timestamp_ms=0,
        raw=message(partition, offset),
    )


def offsets(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition(), m.offset()) for m in messages]


def test_a_dead_letter_waits_for_the_frames_queued_ahead_of_it() -> None:
    # Frames 5..9 of partition 0 are queued or in flight; poison record 10 was dead-lettered at once.
    ready, waiting = committable([message(0, 10)], [pending(0, 5), pending(0, 9)])
    assert ready == [] and offsets(waiting) == [(0, 10)]


def test_other_partitions_and_earlier_offsets_commit_at_once() -> None:
    done = [message(0, 3), message(1, 10), message(0, 12)]
    ready, waiting = committable(done, [pending(0, 7)])
    assert offsets(ready) == [(0, 3), (1, 10)]
    assert offsets(waiting) == [(0, 12)]


def test_everything_commits_once_nothing_is_pending() -> None:
    done = [message(0, 10), message(0, 11)]
    ready, waiting = committable(done, [])
    assert offsets(ready) == [(0, 10), (0, 11)] and waiting == []
