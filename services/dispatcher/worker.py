"""One delivery worker per webhook endpoint: its own thread and queue, so a slow or dead endpoint only
ever delays its own events. Events leave in the order they were queued (so in order per incident);
each is retried with capped, jittered backoff, then dead-lettered, and the next one goes."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter, Gauge, Histogram

from libs.destinations import WebhookEndpoint
from libs.kafka import SourceRecord
from services.dispatcher.core import backoff_delay, retryable
from services.dispatcher.events import encode, signed_headers

log = logging.getLogger(__name__)

SENT = Counter("cctv_dispatcher_sent_total", "Events an endpoint accepted (2xx)", ["destination", "endpoint"])
RETRIED = Counter("cctv_dispatcher_retries_total", "Delivery attempts that are retried", ["destination", "endpoint"])
FAILED = Counter(
    "cctv_dispatcher_failed_total", "Events given up on and dead-lettered", ["destination", "endpoint", "reason"]
)
LATENCY = Histogram(
    "cctv_dispatcher_delivery_seconds",
    "From the alert's production to the endpoint's 2xx",
    ["destination", "endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
QUEUED = Gauge("cctv_dispatcher_queued", "Events waiting for an endpoint", ["destination", "endpoint"])


class DeliveryGaveUp(Exception):
    """An event an endpoint did not accept: after every attempt, or refused outright (4xx)."""


@dataclass(frozen=True)
class Job:
    event: dict[str, Any]
    source: SourceRecord
    produced_at_us: int
    snapshot: bytes | None = None  # the alert's JPEG, as captured: masked (or not) per destination
    people: tuple[dict[str, Any], ...] = ()  # the alert's objects: heads of tracked people are masked too


@dataclass(frozen=True)
class SnapshotRelease:
    """A snapshot an endpoint accepted: what the release ledger records."""

    masked: bool
    faces: int
    plates: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 1.0
    cap_s: float = 60.0


_STOPPED = object()
Finished = Callable[[Job, DeliveryGaveUp | None, SnapshotRelease | None], None]
# Turns a job's snapshot into the event's `snapshot` field and what to record (None: nothing to send).
SnapshotPolicy = Callable[[Job], tuple[dict[str, Any] | None, SnapshotRelease | None]]


class EndpointWorker:
    def __init__(
        self,
        destination: str,
        endpoint: WebhookEndpoint,
        secret: bytes,
        policy: RetryPolicy,
        finished: Finished,
        snapshots: SnapshotPolicy,
    ) -> None:
        self.destination, self.endpoint, self.policy = destination, endpoint, policy
        self._secret, self._finished, self._snapshots = secret, finished, snapshots
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        cert = (
            (str(endpoint.client_cert.cert_file), str(endpoint.client_cert.key_file)) if endpoint.client_cert else None
        )
        self._client = httpx.Client(
            timeout=endpoint.timeout_s, cert=cert, verify=str(endpoint.ca_file) if endpoint.ca_file else True
        )
        self._labels = (destination, endpoint.name)
        self._thread = threading.Thread(target=self._run, name=f"webhook-{destination}-{endpoint.name}", daemon=True)

    def start(self) -> EndpointWorker:
        self._thread.start()
        return self

    def submit(self, job: Job) -> None:
        self._queue.put(job)
        QUEUED.labels(*self._labels).set(self._queue.qsize())

    def backlog(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                return
            # Masking runs here, in the endpoint's own thread: its cost never holds up another destination.
            snapshot, release = self._snapshots(job) if job.snapshot is not None else (None, None)
            event = job.event if snapshot is None else job.event | {"data": job.event["data"] | {"snapshot": snapshot}}
            outcome = self._deliver(job, event)
            if outcome is _STOPPED:
                return  # shutting down mid-retry: not finished, so not committed; redelivered after restart
            gave_up = outcome if isinstance(outcome, DeliveryGaveUp) else None
            self._finished(job, gave_up, release if gave_up is None else None)
            QUEUED.labels(*self._labels).set(self._queue.qsize())

    def _attempt(self, body: bytes, event: dict[str, Any]) -> tuple[bool, bool, str]:
        """(accepted, worth retrying, reason)."""
        headers = signed_headers(self._secret, int(time.time()), body, event)
        try:
            response = self._client.post(self.endpoint.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return False, True, f"timed out after {self.endpoint.timeout_s:g} s"
        except httpx.HTTPError as error:
            return False, True, f"{type(error).__name__}: {error}"
        if 200 <= response.status_code < 300:
            return True, False, ""
        return False, retryable(response.status_code), f"HTTP {response.status_code}"

    def _deliver(self, job: Job, event: dict[str, Any]) -> DeliveryGaveUp | None | object:
        """None when accepted, the reason when given up, _STOPPED when shutdown interrupted the retries."""
        body = encode(event)
        reason = ""
        for attempt in range(1, self.endpoint.max_attempts + 1):
            accepted, again, reason = self._attempt(body, event)
            if accepted:
                SENT.labels(*self._labels).inc()
                LATENCY.labels(*self._labels).observe(max(0.0, time.time() - job.produced_at_us / 1e6))
                return None
            if not again or attempt == self.endpoint.max_attempts:
                break
            RETRIED.labels(*self._labels).inc()
            delay = backoff_delay(attempt, self.policy.initial_s, self.policy.cap_s)
            log.warning(
                "webhook %s/%s: event %s attempt %d failed (%s); retry in %.1f s",
                *self._labels,
                job.event["id"],
                attempt,
                reason,
                delay,
            )
            if self._stop.wait(delay):
                return _STOPPED
        kind = "refused" if reason.startswith("HTTP 4") else "exhausted"
        FAILED.labels(*self._labels, kind).inc()
        return DeliveryGaveUp(
            f"webhook {self.destination}/{self.endpoint.name}: event {job.event['id']} not "
            f"delivered after {attempt} attempt(s); last: {reason}"
        )
