"""The cameras a frame-sampler instance is serving: one `Camera` object each, in one map.

A `Camera` owns everything kept for that camera between packets: its decoder (with the sampling policy
and motion state inside), the stream header its last keyframe announced, the Kafka coordinates of its
recent packets (so a sampled frame names the packet it came from), and the partition it arrives on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor

from libs.cameras import Sampling
from libs.records import VideoPacket
from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.decoder import CameraDecoder
from services.frame_sampler.outputs import EncodedPacket, SampledFrame

log = logging.getLogger(__name__)

# Enough packets to find the source offset of a frame held back by the nearest-tick selector.
OFFSET_MEMORY = 2048
MICROSECOND_TIME_BASE = (1, 1_000_000)


class Camera:
    def __init__(self, camera_id: str, config: FrameSamplerConfig, jpeg_executor: Executor | None = None) -> None:
        self.camera_id = camera_id
        self.config = config
        self.decoder = CameraDecoder(camera_id, config, jpeg_executor)
        self.partition: int | None = None
        # Only keyframes carry codec and extradata; the packets in between decode with the last ones seen.
        self.codec = ""
        self.extradata: bytes | None = None
        self._sources: OrderedDict[tuple[str, int], tuple[int, int]] = OrderedDict()

    def packet(self, record: VideoPacket, partition: int, offset: int) -> EncodedPacket:
        """The decoder's input for a consumed packet, remembering its header and coordinates."""
        self.partition = partition
        if record.is_keyframe and record.codec:
            self.codec, self.extradata = record.codec, record.extradata
        self._sources[(record.session_id, record.sequence)] = (partition, offset)
        while len(self._sources) > OFFSET_MEMORY:
            self._sources.popitem(last=False)
        return EncodedPacket(
            camera_id=self.camera_id,
            codec=self.codec,
            extradata=self.extradata,
            time_base=MICROSECOND_TIME_BASE,
            pts_us=record.pts_us,
            dts_us=record.dts_us,
            is_keyframe=record.is_keyframe,
            data=record.data,
            sequence=record.sequence,
            session_id=record.session_id,
            capture_time_ms=record.capture_time_ms,
        )

    def source_of(self, frame: SampledFrame) -> tuple[int, int] | None:
        """(partition, offset) of the packet a frame was decoded from, if still remembered."""
        return self._sources.get((frame.session_id, frame.sequence))

    @property
    def active(self) -> bool:
        return self.decoder.activity_state.state == "active"


class CameraMap:
    """The one map of cameras. A camera's sampling policy comes from the inventory (`policy_of`), else
    from the defaults; when its policy changes, the camera starts afresh with a new decoder."""

    def __init__(
        self,
        defaults: FrameSamplerConfig,
        policy_of: Callable[[str], Sampling | None] = lambda _c: None,
        policy_version: Callable[[], int] = lambda: 0,
        jpeg_executor: Executor | None = None,
    ) -> None:
        self.defaults = defaults
        self.policy_of = policy_of
        self.policy_version = policy_version
        self.jpeg_executor = jpeg_executor
        self.cameras: dict[str, Camera] = {}
        self._checked_at: dict[str, int] = {}  # policy version each camera was last checked against

    def config_for(self, camera_id: str) -> FrameSamplerConfig:
        sampling = self.policy_of(camera_id)
        return self.defaults if sampling is None else self.defaults.model_copy(update={"sampling": sampling})

    def get(self, camera_id: str) -> Camera:
        # The policy is looked up again only when the inventory changed, not for every packet.
        version = self.policy_version()
        camera = self.cameras.get(camera_id)
        if camera is not None and self._checked_at.get(camera_id) == version:
            return camera
        config = self.config_for(camera_id)
        if camera is None or camera.config != config:
            if camera is not None:
                log.info("sampling policy of %s changed: new decoder", camera_id, extra={"camera_id": camera_id})
            camera = self.cameras[camera_id] = Camera(camera_id, config, self.jpeg_executor)
        self._checked_at[camera_id] = version
        return camera

    def forget_partitions(self, partitions: set[int]) -> None:
        """Rebalance: drop the cameras of partitions this instance no longer owns (a new owner restarts
        their decoding at a keyframe)."""
        for camera_id in [c for c, camera in self.cameras.items() if camera.partition in partitions]:
            del self.cameras[camera_id]
            self._checked_at.pop(camera_id, None)

    def active_count(self) -> int:
        return sum(1 for camera in self.cameras.values() if camera.active)
