"""Frame-sampler settings: motion gating, JPEG encoding, decoder threads, and the default sampling
policy (`libs.cameras.Sampling`, the same model the camera inventory carries per camera)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.cameras import Sampling


class MotionConfig(BaseModel):
    """Motion gating on a small grayscale copy of each considered frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_width: int = Field(default=160, ge=32, le=1280, description="width of the grayscale copy, pixels")
    pixel_threshold: int = Field(
        default=12, ge=1, le=255, description="grey-level change (0-255) for a pixel to count as changed"
    )
    background_time_constant_s: float = Field(
        default=20.0, gt=0, description="how fast the background model absorbs slow changes (light, parked cars)"
    )
    activate_score: float = Field(
        default=0.003, ge=0, le=1, description="fraction of moving pixels that makes an idle camera active"
    )
    deactivate_score: float = Field(
        default=0.001, ge=0, le=1, description="fraction of moving pixels under which an active camera may go idle"
    )
    idle_hold_s: float = Field(
        default=3.0, ge=0, description="an active camera goes idle only after this long below deactivate_score"
    )

    @model_validator(mode="after")
    def _hysteresis_is_ordered(self) -> MotionConfig:
        if self.deactivate_score > self.activate_score:
            raise ValueError(
                f"deactivate_score ({self.deactivate_score}) must not exceed activate_score ({self.activate_score})"
            )
        return self


class JpegConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: int = Field(default=80, ge=1, le=100)
    max_dimension: int = Field(default=1280, ge=16, le=8192, description="longest side of the JPEG, pixels")
    fast_dct: bool = Field(default=True, description="libjpeg-turbo's fast DCT: ~25% quicker, barely visible loss")


class FrameSamplerConfig(BaseModel):
    """How one camera is sampled. `sampling` is the default policy; a camera's inventory entry brings its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: Sampling = Sampling()
    motion: MotionConfig = MotionConfig()
    jpeg: JpegConfig = JpegConfig()
    decoder_threads: int = Field(
        default=1, ge=0, le=64, description="threads per camera decoder; 0 = FFmpeg's choice. 1 scales best"
    )
