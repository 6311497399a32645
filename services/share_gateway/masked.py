"""Masked shares: decode → blur faces (CenterFace, libs/masking.py) → re-encode H.264, one camera at a
time. The smallest local piece: the `clips` branch's libs/video_masking.py is meant to replace it once
merged (it also masks heads of tracked people and plates inside vehicle boxes, which need detections).

Each input keyframe becomes an output keyframe, so segments are cut where the camera's own GOPs end and
the glass-to-glass delay does not grow with the masking.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from libs.masking import FaceDetector, pixelate
from services.share_gateway.hls import MICROS, Packet


class MaskedReencoder:
    def __init__(self, detector: FaceDetector, encoder: str = "libx264") -> None:
        self.detector = detector
        self.encoder_name = encoder
        self._decoder: av.VideoCodecContext | None = None
        self._encoder: av.VideoCodecContext | None = None
        self._session: str | None = None
        self._timing: dict[int, tuple[int, int, str]] = {}  # pts → (capture time, dts, session)

    def _open(self, packet: Packet) -> None:
        if not packet.codec:
            raise ValueError("masking starts at a keyframe carrying the codec")
        decoder = av.CodecContext.create(packet.codec, "r")
        if packet.extradata:
            decoder.extradata = packet.extradata
        decoder.thread_count = 1
        self._decoder = decoder  # type: ignore[assignment]
        self._encoder = None
        self._session = packet.session_id

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        encoder = av.CodecContext.create(self.encoder_name, "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = MICROS
        encoder.framerate = Fraction(25)
        # No B-frames and no look-ahead: a frame leaves the encoder as soon as it is in.
        encoder.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "23"}
        encoder.max_b_frames = 0
        encoder.gop_size = 250  # keyframes follow the camera's own (forced below)
        encoder.open()
        return encoder

    def push(self, packet: Packet) -> list[Packet]:
        if self._decoder is None or packet.session_id != self._session:
            if not (packet.is_keyframe and packet.codec):
                return []  # wait for a keyframe that says how to decode
            self._open(packet)
        assert self._decoder is not None
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts_us, packet.dts_us, MICROS
        self._timing[packet.pts_us] = (packet.capture_us, packet.dts_us, packet.session_id)
        out: list[Packet] = []
        for frame in self._decoder.decode(source):
            rgb = frame.to_ndarray(format="rgb24")
            masked = pixelate(rgb, [r.grown(1.3, rgb.shape[1], rgb.shape[0]) for r in self.detector.detect(rgb)])
            if self._encoder is None:
                self._encoder = self._open_encoder(frame.width, frame.height)
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(masked), format="rgb24").reformat(
                format="yuv420p"
            )
            picture.pts, picture.time_base = frame.pts, MICROS
            picture.pict_type = av.video.frame.PictureType.I if frame.key_frame else av.video.frame.PictureType.NONE
            out += self._packets(self._encoder.encode(picture), frame.width, frame.height)
        if len(self._timing) > 256:  # frames the decoder never returned
            for stale in sorted(self._timing)[:-64]:
                del self._timing[stale]
        return out

    def _packets(self, encoded: list[av.Packet], width: int, height: int) -> list[Packet]:
        result = []
        for item in encoded:
            pts = int(item.pts) if item.pts is not None else 0
            capture, _dts, session = self._timing.pop(pts, (0, pts, self._session or ""))
            result.append(
                Packet(
                    bytes(item),
                    pts,
                    int(item.dts) if item.dts is not None else pts,
                    int(item.duration) if item.duration else None,
                    item.is_keyframe,
                    capture,
                    session,
                    "h264",
                    None,  # in-band SPS/PPS (Annex B): MPEG-TS needs no extradata
                    width,
                    height,
                )
            )
        return result


def masked_reencoder_factory(upscale: int = 1) -> Callable[[], MaskedReencoder]:
    """One detector per gateway (the model loads once), one decoder/encoder pair per masked camera."""
    detector: list[FaceDetector] = []

    def make() -> MaskedReencoder:
        if not detector:
            detector.append(FaceDetector(upscale=upscale))
        return MaskedReencoder(detector[0])

    return make
