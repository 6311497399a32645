"""The share gateway's settings (environment CCTV_..., or the YAML named by CCTV_CONFIG_FILE)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator

from libs.settings import CommonSettings
from libs.video_masking import VideoMaskingSettings


class EdgeSettings(BaseModel):
    """The public side: share links are served here (probes and metrics stay on `http`, internal)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8090, ge=0, le=65535)
    # Proxies whose X-Forwarded-For is believed (the audited client address): the Ingress controller's.
    forwarded_allow_ips: str = "127.0.0.1"


class ShareGatewaySettings(CommonSettings):
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    share_key: SecretStr | None = Field(default=None, description="signs share links; the console's share key")
    share_key_file: Path | None = None
    # The dispatcher's routing file (agencies, `unmasked: true`): an unmasked share plays only while its
    # agency's entry still allows it. Unset: the console's check when the share was made stands.
    routes_file: Path | None = None
    segment_s: float = Field(default=1.0, gt=0, le=10, description="HLS segment target (cut at the next keyframe)")
    playlist_segments: int = Field(default=4, ge=2, le=20)
    # A viewer's requests within this gap are one viewing session: audited once, not per segment.
    viewer_idle_s: float = Field(default=60.0, gt=0)
    # How long a first playlist request waits for the camera's first segment before answering 503.
    first_segment_wait_s: float = Field(default=10.0, ge=0, le=30)
    # Masked shares: how video is masked and re-encoded (libs/video_masking.py).
    masking: VideoMaskingSettings = Field(default_factory=VideoMaskingSettings)
    # Faces are searched at this scale (2 finds 6-9 px faces at 4-5x the cost, docs/benchmarks/masking.md).
    masking_upscale: int = Field(default=1, ge=1, le=4)
    # Heads of people and plates inside vehicles too (the detector's model on every k-th frame): faces
    # seen from afar or from behind are hidden as heads. Off = faces only, at a fraction of the CPU.
    masking_people: bool = True

    @model_validator(mode="after")
    def _has_key(self) -> ShareGatewaySettings:
        if self.share_key is None and self.share_key_file is None:
            raise ValueError(
                "no share key: set CCTV_SHARE_KEY or CCTV_SHARE_KEY_FILE (a Secret, the same as the console's "
                "CCTV_SHARES__KEY), e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return self

    def read_share_key(self) -> str:
        if self.share_key is not None:
            return self.share_key.get_secret_value()
        assert self.share_key_file is not None
        return self.share_key_file.read_text(encoding="utf-8").strip()
