"""The camera-controller's settings: the common Kafka/registry sections plus `controller`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from libs.settings import CommonSettings
from services.camera_controller.kube import default_identity


class ControllerConfig(BaseModel):
    kubeconfig: str | None = None  # None: in-cluster ServiceAccount
    namespace: str = Field(default="", description="namespace whose Cameras are watched; '' = all")
    platform_namespace: str = Field(
        default="default", min_length=1, description="where the Lease and credentials Secret live"
    )
    credentials_secret: str = ""  # the Secret ingest mounts; Cameras may reference only its keys
    lease_name: str = "cctv-camera-controller"
    identity: str = Field(default_factory=default_identity)
    lease_duration_s: float = Field(default=15.0, ge=2)
    renew_every_s: float = Field(default=5.0, gt=0)
    resync_every_s: float = Field(default=300.0, ge=5)
    # Status is written between watch events, so a quiet cluster still sees status within this.
    watch_timeout_s: int = Field(default=2, ge=1)
    prune: bool = True  # resync tombstones inventory records without a Camera
    status_writes_per_s: float = Field(default=10.0, gt=0)
    status_burst: int = Field(default=50, ge=1)
    status_refresh_s: float = Field(default=60.0, gt=0)


class ControllerSettings(CommonSettings):
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
