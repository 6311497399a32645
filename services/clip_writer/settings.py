"""Clip-writer configuration (CCTV_CLIPS__*, CCTV_S3__*, CCTV_EVIDENCE__*), validated at start."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, Field, SecretStr

from libs.settings import CommonSettings
from services.clip_writer.core import ClipPolicy
from services.clip_writer.manifest import (
    load_private_key,
    load_public_key,
    read_key_file,
)
from services.clip_writer.store import S3Settings


class EvidenceKeySettings(BaseModel):
    """The Ed25519 key that signs manifests (from a Secret): inline (PEM or base64 seed) or a file."""

    signing_key: SecretStr | None = None
    signing_key_file: Path | None = None
    verify_key: str | None = None  # public key for `cctv evidence verify` where the signing key is absent

    def private_key(self) -> Ed25519PrivateKey:
        if self.signing_key is not None:
            return load_private_key(self.signing_key.get_secret_value())
        if self.signing_key_file is not None:
            return load_private_key(read_key_file(self.signing_key_file))
        raise ValueError("no evidence signing key: set CCTV_EVIDENCE__SIGNING_KEY or CCTV_EVIDENCE__SIGNING_KEY_FILE")

    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies manifests: verify_key if given, else the signing key's public half."""
        if self.verify_key:
            return load_public_key(self.verify_key)
        return self.private_key().public_key()


class EvidenceCliSettings(CommonSettings):
    """What `cctv evidence` needs: the store, the audit topic's Kafka, the verification key."""

    s3: S3Settings = Field(default_factory=S3Settings)
    evidence: EvidenceKeySettings = Field(default_factory=EvidenceKeySettings)


class ClipWriterSettings(CommonSettings):
    group_id: str = "cctv-clip-writer"
    clips: ClipPolicy = Field(default_factory=ClipPolicy)
    s3: S3Settings = Field(default_factory=S3Settings)
    evidence: EvidenceKeySettings = Field(default_factory=EvidenceKeySettings)
    # Ended incidents held while storage is down; beyond this, alerts are not consumed (nothing is lost:
    # they stay on the topic, uncommitted).
    max_queued_clips: int = Field(default=256, ge=1)
    max_wait_s: float = Field(default=60.0, ge=0)
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    retention_sweep_s: float = Field(default=3600.0, gt=0)
