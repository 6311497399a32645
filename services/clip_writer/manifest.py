"""Evidence manifests: what a clip is made of, hashed and signed (Ed25519), and their verification.

The manifest is canonical JSON (sorted keys, no spaces, UTF-8), so its bytes — and so its sha256 and
signature — are the same wherever it is rebuilt. The signature document next to it holds the manifest's
sha256, the signature over the manifest bytes and the id of the signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from services.clip_writer.core import ClipPolicy, Incident, Segment, retention_until_us

MANIFEST_VERSION = 1


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + sha256_hex(raw)[:16]


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) private key, or the 32-byte raw seed in base64 (as a Secret would hold it)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the evidence signing key is a PEM key but not Ed25519")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("the evidence signing key is neither PEM nor base64") from None
    if len(seed) != 32:
        raise ValueError(f"a base64 Ed25519 signing key must decode to 32 bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_public_key(text: str) -> Ed25519PublicKey:
    """A PEM public key or the 32 raw bytes in base64."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the evidence verification key is a PEM key but not Ed25519")
        return key
    raw = base64.b64decode(text, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def read_key_file(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read key file {path}: {error.strerror}") from None


@dataclass(frozen=True)
class StoredSegment:
    key: str
    data_sha256: str
    size: int
    segment: Segment


def build_manifest(
    incident: Incident, policy: ClipPolicy, stored: list[StoredSegment], topic: str, created_at_us: int
) -> dict[str, Any]:
    first, last = stored[0].segment, stored[-1].segment
    return {
        "version": MANIFEST_VERSION,
        "alert_id": incident.alert_id,
        "camera_id": incident.camera_id,
        "event_type": incident.event_type,
        "incident": {"started_at_us": incident.started_at_us, "ended_at_us": incident.ended_at_us},
        "pre_roll_s": policy.pre_roll_s,
        "post_roll_s": policy.post_roll_s,
        "clip": {"start_us": first.start_us, "end_us": last.end_us},
        "codec": first.header.codec,
        "width": first.header.width,
        "height": first.header.height,
        "container": "mp4",
        "objects": [
            {
                "key": item.key,
                "sha256": item.data_sha256,
                "size": item.size,
                "start_us": item.segment.start_us,
                "end_us": item.segment.end_us,
                "session_id": item.segment.header.session_id,
                "packets": len(item.segment.packets),
                "first_packet": {
                    "topic": topic,
                    "partition": item.segment.packets[0].partition,
                    "offset": item.segment.packets[0].offset,
                },
                "last_packet": {
                    "topic": topic,
                    "partition": item.segment.packets[-1].partition,
                    "offset": item.segment.packets[-1].offset,
                },
            }
            for item in stored
        ],
        "retention_until_us": retention_until_us(incident, policy),
        "created_at_us": created_at_us,
    }


def sign_manifest(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The signature document stored next to the manifest."""
    return canonical_bytes(
        {
            "manifest_sha256": sha256_hex(manifest_bytes),
            "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode(),
            "key_id": key_id(private_key.public_key()),
            "algorithm": "Ed25519",
        }
    )


@dataclass(frozen=True)
class Verification:
    alert_id: str
    problems: list[str]
    checked: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_clip(
    alert_id: str,
    manifest_bytes: bytes | None,
    signature_bytes: bytes | None,
    public_key: Ed25519PublicKey,
    read_object: Callable[[str], bytes | None],
) -> Verification:
    """Re-hash the manifest and every object and check the signature; each difference is named."""
    problems: list[str] = []
    checked: list[str] = []
    if manifest_bytes is None:
        return Verification(alert_id, [f"no manifest stored for alert {alert_id}"], checked)
    if signature_bytes is None:
        problems.append("the manifest's signature document is missing")
    else:
        try:
            signature = json.loads(signature_bytes)
        except ValueError:
            signature = {}
            problems.append("the signature document is not valid JSON")
        actual = sha256_hex(manifest_bytes)
        if signature.get("manifest_sha256") != actual:
            problems.append(
                f"manifest sha256 is {actual}, the signature document says {signature.get('manifest_sha256')}"
            )
        if signature.get("key_id") != key_id(public_key):
            problems.append(f"manifest signed with key {signature.get('key_id')}, verifying with {key_id(public_key)}")
        try:
            public_key.verify(base64.b64decode(signature.get("signature", "")), manifest_bytes)
            checked.append(f"signature ({signature.get('key_id')}) valid over the manifest")
        except (InvalidSignature, ValueError):
            problems.append(
                "the Ed25519 signature does not match the manifest (the manifest was altered or signed by another key)"
            )
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        return Verification(alert_id, [*problems, "the manifest is not valid JSON"], checked)
    if manifest.get("alert_id") != alert_id:
        problems.append(f"the manifest is for alert {manifest.get('alert_id')}, not {alert_id}")
    for item in manifest.get("objects", []):
        data = read_object(item["key"])
        if data is None:
            problems.append(f"{item['key']}: missing from the bucket")
            continue
        if len(data) != item["size"]:
            problems.append(f"{item['key']}: size {len(data)} bytes, manifest says {item['size']}")
        digest = sha256_hex(data)
        if digest != item["sha256"]:
            problems.append(f"{item['key']}: sha256 {digest}, manifest says {item['sha256']}")
        else:
            checked.append(f"{item['key']}: sha256 {digest} ({len(data)} bytes)")
    return Verification(alert_id, problems, checked)
