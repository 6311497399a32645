"""The masked copy of a clip, for release: every segment re-encoded with faces, heads and plates
pixelated (libs/video_masking.py), stored next to the original under <alert_id>/masked/, and listed in
release.json, which is hashed and signed like the clip's manifest. The original is left as it is.

release.json names the manifest it was made from (its sha256), how it was masked (settings and the
models' sha256) and, per object, the original segment it replaces, so a verifier can tell exactly what
a released file is.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.evidence_access import MASKED_PREFIX, RELEASE, RELEASE_SIGNATURE, NotFound
from libs.evidence_store import MANIFEST, EvidenceStore
from libs.masking import CENTERFACE_PATH, FaceDetector
from libs.video_masking import ObjectsSource, mask_mp4, model_people
from services.clip_writer.core import ClipError
from services.clip_writer.manifest import canonical_bytes, sha256_hex, sign_manifest
from services.clip_writer.settings import MaskedCopySettings

log = logging.getLogger(__name__)
RELEASE_VERSION = 1
PEOPLE_MODEL = Path(__file__).resolve().parents[2] / "models" / "centernet-mobilenetv3-coco.onnx"


@cache
def _model_sha256(path: Path) -> str:
    return sha256_hex(path.read_bytes())


class Masker:
    """The models, loaded once per process (CenterFace, and the detector's CenterNet for people/vehicles)."""

    def __init__(self, settings: MaskedCopySettings) -> None:
        self.settings = settings
        self.faces = FaceDetector(threads=settings.threads)
        self.people: ObjectsSource = model_people(threads=settings.threads, min_score=settings.people_min_score)

    def describe(self) -> dict[str, Any]:
        return {
            **self.settings.masking.model_dump(),
            "people_min_score": self.settings.people_min_score,
            "face_model_sha256": _model_sha256(CENTERFACE_PATH),
            "people_model_sha256": _model_sha256(PEOPLE_MODEL),
        }


def make_masked_copy(
    store: EvidenceStore, alert_id: str, masker: Masker, private_key: Ed25519PrivateKey, created_by: str
) -> dict[str, Any]:
    """Mask every segment of the clip, store the copies, then release.json and its signature (last, so a
    copy is listed only once complete). Returns the release manifest. Idempotent: same keys each time."""
    manifest_bytes = store.get(store.key(alert_id, MANIFEST))
    if manifest_bytes is None:
        raise NotFound(f"no evidence clip stored for alert {alert_id}")
    manifest = _json(manifest_bytes)
    started = time.perf_counter()
    objects, frames = [], 0
    for item in manifest["objects"]:
        original = store.get(item["key"])
        if original is None or sha256_hex(original) != item["sha256"]:
            raise ClipError(f"{item['key']} is missing or altered (run `cctv evidence verify {alert_id}`)")
        try:
            masked, stats = mask_mp4(original, masker.settings.masking, masker.faces, masker.people)
        except ValueError as error:
            raise ClipError(f"{item['key']}: {error}") from error
        frames += stats.frames
        key = store.key(alert_id, MASKED_PREFIX + item["key"].rsplit("/", 1)[-1])
        digest = sha256_hex(masked)
        store.put(key, masked, "video/mp4", digest)
        objects.append(
            {
                "key": key,
                "sha256": digest,
                "size": len(masked),
                "start_us": item["start_us"],
                "end_us": item["end_us"],
                "frames": stats.frames,
                "source_key": item["key"],
                "source_sha256": item["sha256"],
            }
        )
    release = {
        "version": RELEASE_VERSION,
        "kind": "masked-copy",
        "alert_id": alert_id,
        "camera_id": manifest["camera_id"],
        "source_manifest_sha256": sha256_hex(manifest_bytes),
        "masking": masker.describe(),
        "objects": objects,
        "created_at_us": time.time_ns() // 1000,
        "created_by": created_by,
    }
    release_bytes = canonical_bytes(release)
    store.put(store.key(alert_id, RELEASE), release_bytes, "application/json", sha256_hex(release_bytes))
    store.put(store.key(alert_id, RELEASE_SIGNATURE), sign_manifest(release_bytes, private_key), "application/json")
    hold = store.hold(alert_id)
    if hold is not None:  # made after a legal hold: the copy is held like the rest of the clip
        store.set_hold(alert_id, hold)
    elapsed = time.perf_counter() - started
    log.info(
        "masked copy of alert %s: %d object(s), %d frames in %.1f s (%.0f ms/frame)",
        alert_id,
        len(objects),
        frames,
        elapsed,
        1000 * elapsed / max(1, frames),
        extra={"camera_id": manifest["camera_id"]},
    )
    return release


def _json(data: bytes) -> dict[str, Any]:
    import json

    document: dict[str, Any] = json.loads(data)
    return document
