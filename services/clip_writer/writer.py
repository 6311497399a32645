"""Turns an open clip job into stored objects: read its packets, cut segments, remux, store, sign.

The adapters it drives are passed in (a packet source reading cctv.video.packets.v1, the S3 store), so
this module holds the order of operations: segments first, each only if not stored yet, the manifest and
its signature last — a clip is listed (and counts as written) only once its manifest exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.evidence_store import MANIFEST, SIGNATURE, EvidenceStore
from services.clip_writer.core import (
    ClipError,
    ClipPolicy,
    Incident,
    Packet,
    Segment,
    covers,
    cut_segments,
)
from services.clip_writer.jobs import ClipJob
from services.clip_writer.manifest import (
    StoredSegment,
    build_manifest,
    canonical_bytes,
    sha256_hex,
    sign_manifest,
)
from services.clip_writer.remux import remux_mp4

log = logging.getLogger(__name__)


class PacketSource(Protocol):
    topic: str

    def read(self, camera_id: str, start_us: int, end_us: int) -> list[Packet]: ...


def segment_key(store: EvidenceStore, alert_id: str, index: int) -> str:
    return store.key(alert_id, f"segment-{index:03d}.mp4")


class ClipBuilder:
    def __init__(
        self,
        policy: ClipPolicy,
        source: PacketSource,
        store: EvidenceStore,
        signing_key: Ed25519PrivateKey,
        now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        max_wait_s: float = 60.0,
    ) -> None:
        self.policy, self.source, self.store, self.signing_key, self.now_us = policy, source, store, signing_key, now_us
        # How long past the post-roll to wait for packets that have not arrived (a camera gone offline)
        # before writing the clip with what there is.
        self.max_wait_us = int(max_wait_s * 1_000_000)

    def _segments(self, incident: Incident, until_us: int) -> list[Segment]:
        start_us, _ = incident.window(self.policy)
        packets = self.source.read(incident.camera_id, start_us, until_us)
        if not packets:
            raise ClipError(
                f"no packets of camera {incident.camera_id} between {start_us} and {until_us} "
                f"on {self.source.topic} (expired, or the camera sent nothing)"
            )
        return cut_segments(packets, (start_us, until_us), self.policy)

    def _store_segment(self, job: ClipJob, segment: Segment) -> StoredSegment:
        key = segment_key(self.store, job.incident.alert_id, segment.index)
        data = remux_mp4(segment)
        digest = sha256_hex(data)
        if job.stored_keys.get(key) != digest and self.store.stored_sha256(key) != digest:
            self.store.put(key, data, "video/mp4", sha256=digest)
            log.info("stored %s (%d bytes, %d packets)", key, len(data), len(segment.packets))
        job.stored_keys[key] = digest
        return StoredSegment(key, digest, len(data), segment)

    def store_closed_segments(self, job: ClipJob) -> int:
        """While an incident goes on: store every segment already followed by another one."""
        segments = self._segments(job.incident, self.now_us())
        for segment in segments[:-1]:
            self._store_segment(job, segment)
        return max(0, len(segments) - 1)

    def finish(self, job: ClipJob) -> dict | None:
        """Write the whole clip and its signed manifest; None while post-roll packets may still arrive."""
        incident = job.incident
        window = incident.window(self.policy)
        segments = self._segments(incident, window[1])
        if not covers(segments, window) and self.now_us() < incident.due_at_us(self.policy) + self.max_wait_us:
            return None
        stored = [self._store_segment(job, segment) for segment in segments]
        manifest = build_manifest(incident, self.policy, stored, self.source.topic, self.now_us())
        if not covers(segments, window):
            manifest["note"] = "the stream ended before the post-roll: the clip ends with the last packet received"
        manifest_bytes = canonical_bytes(manifest)
        # Signature before manifest: a listed manifest always has its signature next to it.
        self.store.put(
            self.store.key(incident.alert_id, SIGNATURE),
            sign_manifest(manifest_bytes, self.signing_key),
            "application/json",
        )
        self.store.put(
            self.store.key(incident.alert_id, MANIFEST),
            manifest_bytes,
            "application/json",
            sha256=sha256_hex(manifest_bytes),
        )
        return manifest
