"""The clip writer's masked copies: after a clip is stored, one worker thread re-encodes it masked
(services/clip_writer/release.py), so an operator finds the release copy ready in the console.

Bounded: at most `max_queued` clips wait; a clip that finds the queue full, or whose copy failed while
storage was down, is picked up by the next scan (at start and with every retention sweep), which lists
the clips lacking release.json. The models are loaded by the worker on its first clip.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter, Gauge, Histogram

from libs.evidence_access import RELEASE, NotFound
from libs.evidence_store import EvidenceStore, S3Settings, StorageUnavailable
from services.clip_writer.core import ClipError
from services.clip_writer.release import Masker, make_masked_copy
from services.clip_writer.settings import MaskedCopySettings

log = logging.getLogger(__name__)

MASKED_DONE = Counter("cctv_clip_writer_masked_copies_total", "Masked copies stored", ["outcome"])
MASKED_QUEUED = Gauge("cctv_clip_writer_masked_queued", "Clips waiting for their masked copy")
MASKING_SECONDS = Histogram(
    "cctv_clip_writer_masking_seconds", "Time to make one clip's masked copy", buckets=(1, 5, 15, 30, 60, 120, 300, 900)
)


class MaskedCopies:
    def __init__(self, s3: S3Settings, settings: MaskedCopySettings, key: Ed25519PrivateKey, actor: str) -> None:
        self.store = EvidenceStore(s3)  # its own client: the worker thread never shares one
        self.settings, self.key, self.actor = settings, key, actor
        self.pending: queue.Queue[str] = queue.Queue(settings.max_queued)
        self.queued: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="masked-copies", daemon=True)
        self._masker: Masker | None = None

    def start(self) -> MaskedCopies:
        self.thread.start()
        return self

    def submit(self, alert_id: str) -> bool:
        """Queue a clip for masking; False when the queue is full (the next scan finds it)."""
        with self.lock:
            if alert_id in self.queued:
                return True
            try:
                self.pending.put_nowait(alert_id)
            except queue.Full:
                log.warning(
                    "masked-copy queue full (%d): alert %s waits for the next scan", self.pending.qsize(), alert_id
                )
                return False
            self.queued.add(alert_id)
            MASKED_QUEUED.set(len(self.queued))
            return True

    def scan(self) -> int:
        """Queue every stored clip that has no masked copy yet; returns how many were queued."""
        try:
            lacking = list(self.store.alert_ids(lacking=RELEASE))
        except StorageUnavailable as error:
            log.error("masked-copy scan skipped, storage unavailable: %s", error)
            return 0
        return sum(self.submit(alert_id) for alert_id in lacking)

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                alert_id = self.pending.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._one(alert_id)
            finally:
                with self.lock:
                    self.queued.discard(alert_id)
                    MASKED_QUEUED.set(len(self.queued))

    def _one(self, alert_id: str) -> None:
        if self._masker is None:
            self._masker = Masker(self.settings)
        started = time.perf_counter()
        try:
            make_masked_copy(self.store, alert_id, self._masker, self.key, self.actor)
        except StorageUnavailable as error:
            MASKED_DONE.labels("storage_unavailable").inc()
            log.error("masked copy of alert %s postponed to the next scan, storage unavailable: %s", alert_id, error)
            return
        except (ClipError, NotFound) as error:
            MASKED_DONE.labels("failed").inc()
            log.error("no masked copy of alert %s: %s", alert_id, error)
            return
        MASKING_SECONDS.observe(time.perf_counter() - started)
        MASKED_DONE.labels("stored").inc()
