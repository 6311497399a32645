"""Masked shares: a camera's packets → decoded frames → libs/video_masking.py (faces, heads of people,
plates inside vehicles pixelated; H.264 re-encoded with a keyframe wherever the camera had one) → packets
for the HLS segmenter. Segments are therefore cut where the camera's own GOPs end, and a frame keeps its
capture time for the glass-to-glass measurement.
"""

from __future__ import annotations

from collections.abc import Callable

import av

from libs.masking import FaceDetector, PlateDetector
from libs.video_masking import MaskedVideoEncoder, ObjectsSource, VideoMaskingSettings, model_people
from services.share_gateway.hls import MICROS, Packet


class MaskedReencoder:
    """One camera's decoder and masked encoder; restarts both on a new ingest session."""

    def __init__(
        self,
        settings: VideoMaskingSettings,
        faces: FaceDetector,
        people: ObjectsSource | None = None,
        plates: PlateDetector | None = None,
    ) -> None:
        self.settings, self.faces, self.people, self.plates = settings, faces, people, plates
        self._decoder: av.VideoCodecContext | None = None
        self._encoder: MaskedVideoEncoder | None = None
        self._session = ""
        self._captures: dict[int, int] = {}  # pts → capture time, for the packets that come out

    def _restart(self, packet: Packet) -> list[Packet]:
        """Drain the old session's encoder and open a decoder for the new one."""
        drained = self._packets(self._encoder.flush()) if self._encoder is not None else []
        decoder = av.CodecContext.create(packet.codec or "", "r")
        if not isinstance(decoder, av.VideoCodecContext):
            raise ValueError(f"codec {packet.codec!r} is not a video codec")
        if packet.extradata:
            decoder.extradata = packet.extradata
        decoder.thread_count = 1
        self._decoder, self._encoder, self._session = decoder, None, packet.session_id
        self._captures.clear()
        return drained

    def push(self, packet: Packet) -> list[Packet]:
        out: list[Packet] = []
        if self._decoder is None or packet.session_id != self._session:
            if not (packet.is_keyframe and packet.codec):
                return []  # wait for a keyframe that says how to decode
            out += self._restart(packet)
        assert self._decoder is not None
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts_us, packet.dts_us, MICROS
        self._captures[packet.pts_us] = packet.capture_us
        for frame in self._decoder.decode(source):
            if self._encoder is None:
                self._encoder = MaskedVideoEncoder(
                    frame.width, frame.height, MICROS, self.settings, self.faces, self.people, self.plates
                )
            frame.time_base = MICROS
            out += self._packets(self._encoder.push(frame))
        if len(self._captures) > 256:  # packets the decoder dropped
            for stale in sorted(self._captures)[:-64]:
                del self._captures[stale]
        return out

    def _packets(self, encoded: list[av.Packet]) -> list[Packet]:
        assert self._encoder is not None
        result = []
        for item in encoded:
            pts = int(item.pts) if item.pts is not None else 0
            result.append(
                Packet(
                    bytes(item),
                    pts,
                    int(item.dts) if item.dts is not None else pts,
                    int(item.duration) if item.duration else None,
                    item.is_keyframe,
                    self._captures.pop(pts, 0),
                    self._session,
                    "h264",
                    self._encoder.extradata,
                    self._encoder.width,
                    self._encoder.height,
                )
            )
        return result


def masked_reencoder_factory(
    settings: VideoMaskingSettings, upscale: int = 1, detect_people: bool = True
) -> Callable[[], MaskedReencoder]:
    """The models load once per gateway (on the first masked share); one decoder/encoder per camera."""
    models: dict[str, object] = {}

    def make() -> MaskedReencoder:
        if not models:
            models["faces"] = FaceDetector(upscale=upscale)
            if detect_people:
                models["people"], models["plates"] = model_people(), PlateDetector()
        return MaskedReencoder(
            settings,
            models["faces"],  # type: ignore[arg-type]
            models.get("people"),  # type: ignore[arg-type]
            models.get("plates"),  # type: ignore[arg-type]
        )

    return make
