"""The detector's loop: the shared Kafka pieces around an inference thread.

Two threads: the consumer thread fetches and decodes records into a bounded queue; the inference
thread takes up to `batch_size` frames of any cameras (waiting at most `max_wait_ms` after the first)
into one `session.run` and produces the results. With an `overlap` stage (default on a GPU) a third
thread decodes and preprocesses the next full batch while the model runs the current one. When the
queue reaches `queue_high` frames the consumer pauses its partitions and resumes them once the queue
has drained to `queue_low`, so memory stays bounded however far behind the detector is. Offsets are
committed by the consumer thread only for frames whose results were delivered, and never past a frame
of the same partition that is still queued or in flight (a dead-lettered record finishes before the
frames queued ahead of it; committing its offset then would lose those frames in a crash).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from libs import metrics
from libs.health import Health
from libs.kafka import (
    Backpressure,
    BatchHandler,
    DeadLetterPublisher,
    Incoming,
    Producing,
    RecordDecoder,
    Subscription,
    coordinates,
    deliver_then_commit,
    flush_and_close,
)
from libs.serde import AvroSerde
from services.detector.detector import PreparedFrames
from services.detector.stage import PreparingStage


class BatchingLoop:
    """consume → decode (poison → DLQ) → queue → [inference thread: batch → handler → produce] → commit
    delivered, built from libs.kafka's pieces."""

    def __init__(
        self,
        *,
        service: str,
        group_id: str,
        topics: Sequence[str],
        schema_for: Callable[[str], str],
        consumer: Consumer,
        producer: Producer,
        serde: AvroSerde,
        handler: BatchHandler,
        health: Health,
        batch_size: int,
        max_wait_ms: int,
        queue_high: int,
        queue_low: int,
        overlap: PreparingStage | None = None,
    ) -> None:
        self.service = service
        self.health = health
        self.handler = handler
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.subscription = Subscription(consumer, topics, service, health, on_revoke=self._drop_revoked)
        self.producing = Producing(producer, serde, service)
        self.dead_letters = DeadLetterPublisher(producer, serde, service, group_id)
        self.decoder = RecordDecoder(serde, schema_for, self.dead_letters, service)
        self.backpressure = Backpressure(consumer, service, queue_high, queue_low)
        # With a stage to overlap, the next full batch is prepared on its own thread during inference.
        self.overlap = overlap
        self.preparing = ThreadPoolExecutor(1, thread_name_prefix="prepare") if overlap is not None else None
        self.queue: deque[Incoming] = deque()
        self.in_flight: list[Incoming] = []  # taken from the queue by the inference thread, not yet done
        self.done: list[Message] = []  # processed and produced, waiting for delivery + commit
        self.cond = threading.Condition()
        self.busy = threading.Lock()  # held by the inference thread while a batch is in flight
        self.stopping = threading.Event()

    # ---- consumer thread ----------------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> None:
        worker = threading.Thread(target=self._infer_forever, name="inference", daemon=True)
        worker.start()
        self.subscription.subscribe()
        try:
            while not stop():
                messages = self.subscription.poll(self.batch_size, 0.05)
                if messages:
                    decoded = self.decoder.decode(messages)
                    kept = {id(record.raw) for record in decoded}
                    with self.cond:
                        self.queue.extend(decoded)
                        # Dead-lettered records count as processed once the DLQ write is delivered.
                        self.done.extend(m for m in messages if id(m) not in kept and not m.error())
                        self.cond.notify()
                with self.cond:
                    queued = len(self.queue)
                self.backpressure.update(queued)
                self._commit_done()
        finally:
            self.stopping.set()
            with self.cond:
                self.cond.notify_all()
            worker.join(60)
            self._commit_done()
            self.close()

    def _commit_done(self) -> None:
        with self.cond:
            done, self.done = committable(self.done, [*self.queue, *self.in_flight])
        if done:
            deliver_then_commit(self.producing, self.subscription, done)

    def _drop_revoked(self, partitions: list[TopicPartition]) -> None:
        """Rebalance: finish the batch in flight, commit what is done, forget queued frames of lost
        partitions (their new owner reads them again from the committed offsets)."""
        revoked = {(p.topic, p.partition) for p in partitions}
        with self.busy:
            with self.cond:
                self.queue = deque(r for r in self.queue if (r.topic, r.partition) not in revoked)
            self._commit_done()
        self.backpressure.release()

    def close(self) -> None:
        flush_and_close(self.producing, self.subscription)

    # ---- inference thread ---------------------------------------------------------------------------------

    def _take_batch(self) -> list[Incoming]:
        with self.cond:
            while not self.queue and not self.stopping.is_set():
                self.cond.wait(0.5)
            deadline = time.monotonic() + self.max_wait_s
            while len(self.queue) < self.batch_size and not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            return self._take(min(self.batch_size, len(self.queue)))

    def _take(self, count: int) -> list[Incoming]:
        """Pop `count` queued frames into flight (caller holds the condition)."""
        batch = [self.queue.popleft() for _ in range(count)]
        self.in_flight.extend(batch)
        return batch

    def _take_full_batch_now(self) -> list[Incoming]:
        """A whole batch if that many frames are already queued, else nothing (never waits)."""
        with self.cond:
            if len(self.queue) < self.batch_size:
                return []
            return self._take(self.batch_size)

    def _infer_forever(self) -> None:
        following: tuple[list[Incoming], Future[PreparedFrames]] | None = None
        while following is not None or not (self.stopping.is_set() and not self.queue):
            preparing: Future[PreparedFrames] | None = None
            if following is not None:
                batch, preparing = following
                following = None
            else:
                batch = self._take_batch()
                if not batch:
                    continue
            # A rebalance may have dropped these frames' partitions meanwhile: their results are still
            # produced, and their offsets are not committed here (the new owner re-reads them).
            with self.busy:
                started = time.perf_counter()
                if self.overlap is None or self.preparing is None:
                    outputs, rejected = self.handler(batch)
                else:
                    prepared = preparing.result() if preparing is not None else self.overlap.prepare(batch)
                    upcoming = self._take_full_batch_now()
                    if upcoming:
                        following = (upcoming, self.preparing.submit(self.overlap.prepare, upcoming))
                    outputs, rejected = self.overlap.complete(batch, prepared)
                for item in rejected:
                    self.dead_letters.publish(item.message, item.error)
                for out in outputs:
                    self.producing.send(out)
                with self.cond:
                    self.done.extend(record.raw for record in batch)
                    finished = {id(record) for record in batch}
                    self.in_flight = [record for record in self.in_flight if id(record) not in finished]
                metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        if self.preparing is not None:
            self.preparing.shutdown(wait=True)


def committable(done: list[Message], pending: Iterable[Incoming]) -> tuple[list[Message], list[Message]]:
    """Split processed records into those whose offsets may be committed now and those that must wait:
    a record waits while an earlier offset of its partition is still pending (queued or in flight)."""
    floor: dict[tuple[str, int], int] = {}
    for record in pending:
        key = (record.topic, record.partition)
        floor[key] = min(record.offset, floor.get(key, record.offset))
    ready: list[Message] = []
    waiting: list[Message] = []
    for message in done:
        topic, partition, offset = coordinates(message)
        lowest = floor.get((topic, partition))
        (waiting if lowest is not None and lowest < offset else ready).append(message)
    return ready, waiting
