"""Clip-writer configuration (CCTV_CLIPS__*, CCTV_S3__*, CCTV_EVIDENCE__*), validated at start."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, Field, SecretStr

from libs.evidence_store import S3Settings
from libs.settings import CommonSettings
from libs.video_masking import VideoMaskingSettings
from services.clip_writer.core import ClipPolicy
from services.clip_writer.manifest import (
    load_private_key,
    load_public_key,
    read_key_file,
)


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


class MaskedCopySettings(BaseModel):
    """CCTV_MASKED_COPIES__*: whether the clip writer makes each clip's masked copy, and how."""

    enabled: bool = Field(default=True, description="make a masked copy of every stored clip")
    masking: VideoMaskingSettings = Field(default_factory=VideoMaskingSettings)
    people_min_score: float = Field(default=0.3, gt=0, le=1, description="person/vehicle score floor for masking")
    threads: int = Field(default=1, ge=1, le=64, description="ONNX Runtime threads for the two models")
    max_queued: int = Field(default=64, ge=1, description="clips waiting for their masked copy (bounded)")


class EvidenceCliSettings(CommonSettings):
    """What `cctv evidence` needs: the store, the audit topic's Kafka, the verification key."""

    s3: S3Settings = Field(default_factory=S3Settings)
    evidence: EvidenceKeySettings = Field(default_factory=EvidenceKeySettings)
    masked_copies: MaskedCopySettings = Field(default_factory=MaskedCopySettings)


class ClipWriterSettings(CommonSettings):
    group_id: str = "cctv-clip-writer"
    clips: ClipPolicy = Field(default_factory=ClipPolicy)
    s3: S3Settings = Field(default_factory=S3Settings)
    evidence: EvidenceKeySettings = Field(default_factory=EvidenceKeySettings)
    masked_copies: MaskedCopySettings = Field(default_factory=MaskedCopySettings)
    # Ended incidents held while storage is down; beyond this, alerts are not consumed (nothing is lost:
    # they stay on the topic, uncommitted).
    max_queued_clips: int = Field(default=256, ge=1)
    max_wait_s: float = Field(default=60.0, ge=0)
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    retention_sweep_s: float = Field(default=3600.0, gt=0)
