"""One camera's decoder: decode demuxed packets, pick frames by the sampling policy, gate them on motion,
encode JPEGs.

Pure logic, no Kafka. `CameraDecoder.process()` takes one camera's `EncodedPacket`s in order and
returns a `SamplerOutput`: sampled frames (reason 'motion' while the camera is active, 'heartbeat' for
a still scene at most once every `heartbeat_s`), activity changes, and decode issues (bad bytes, missing
extradata, unknown codec: decoding resumes at the next keyframe and the matching counter grows).

Which frames are looked at is set by the sampling policy: every keyframe, or the frame nearest each
1/N s tick of the presentation timestamps. When the wanted rate is not above the keyframe rate, only
keyframes are decoded: non-key packets never reach the decoder (and the decoder skips non-key frames
too), which is what makes the sampler cheap (a keyframe-only decode is ~25x faster).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.video.codeccontext import VideoCodecContext

from services.frame_sampler.config import FrameSamplerConfig
from services.frame_sampler.gate import MotionGate
from services.frame_sampler.outputs import (
    ActivityState,
    DecodeIssue,
    EncodedPacket,
    FrameSamplerError,
    IssueKind,
    PacketFacts,
    SamplerCounters,
    SamplerOutput,
)
from services.frame_sampler.selector import NearestTickSelector

MICROSECONDS = Fraction(1, 1_000_000)
ANNEX_B_START_CODES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
# Codecs whose MP4/RTSP form stores NAL units length-prefixed, with the parameter sets in extradata.
LENGTH_PREFIXED_CODECS = frozenset({"h264", "hevc"})
# A sampling period within this fraction of the keyframe interval still counts as "keyframes suffice"
# (RTSP timestamps jitter a little).
KEYFRAME_INTERVAL_TOLERANCE = 0.05


@dataclass(slots=True)
class _PendingFrame:
    """A decoded frame waiting to be analysed."""

    frame: av.VideoFrame
    info: PacketFacts


@dataclass(slots=True)
class _UndecodedKeyframe:
    """A keyframe packet the fast path may still choose; decoded only if chosen."""

    packet: EncodedPacket
    pts_us: int | None


_Sample = _PendingFrame | _UndecodedKeyframe


class CameraDecoder:
    """Decodes and samples one camera's packet stream. Not thread-safe; one instance per camera.

    Counters are in `self.counters`; the current activity state in `self.activity_state`.
    """

    def __init__(
        self, camera_id: str, config: FrameSamplerConfig | None = None, jpeg_executor: Executor | None = None
    ) -> None:
        self.camera_id = camera_id
        self.config = config or FrameSamplerConfig()
        # JPEGs may be encoded on `jpeg_executor` while the next packets decode (see MotionGate).
        self.counters = SamplerCounters()
        self.gate = MotionGate(camera_id, self.config, jpeg_executor)
        self.last_issue: DecodeIssue | None = None
        self._period_us = self.config.sampling.period_us
        self._selector: NearestTickSelector[_Sample] | None = (
            NearestTickSelector(self._period_us) if self._period_us is not None else None
        )
        self._context: VideoCodecContext | None = None
        self._session_id: str | None = None
        self._stream_config: tuple[str, bytes | None] | None = None
        self._unsupported_config: tuple[str, bytes | None] | None = None
        self._last_sequence: int | None = None
        self._reset_timeline()

    def _reset_timeline(self) -> None:
        self._awaiting_keyframe = True
        # Keyframes mode always takes the fast path; fps mode starts on the full path until the keyframe
        # interval is known (two keyframes seen), then takes the fast path if keyframes are frequent enough.
        self._keyframes_only = self._period_us is None
        self._last_keyframe_pts_us: int | None = None
        self._keyframe_interval_us: int | None = None
        self._last_pts_us: int | None = None
        self._pts_spacing_us: int | None = None
        if self._selector is not None:
            self._selector.reset()

    # ----------------------------------------------------------------- public

    @property
    def activity_state(self) -> ActivityState:
        return self.gate.activity.snapshot()

    @property
    def keyframes_only(self) -> bool:
        """True while non-key packets are dropped undecoded (the fast path)."""
        return self._keyframes_only

    def process(self, packet: EncodedPacket) -> SamplerOutput:
        """Take the camera's next packet; return the frames, activity changes and issues it led to."""
        if packet.camera_id != self.camera_id:
            raise FrameSamplerError(
                f"packet for camera {packet.camera_id!r} given to the decoder of camera {self.camera_id!r}"
            )
        output = SamplerOutput()
        self.counters.packets_received += 1
        if not self._accept_in_order(packet, output):
            return output
        if self._context is None and not packet.is_keyframe and not packet.codec:
            # A camera taken over mid-GOP (rebalance): its codec is known from its next keyframe, and nothing
            # before that keyframe is decodable anyway. Wait for it; an unnamed codec is no issue here.
            self.counters.packets_skipped_awaiting_keyframe += 1
            return output
        if self._context is None and not self._open_decoder(packet, output):
            return output
        if self._awaiting_keyframe:
            if not packet.is_keyframe:
                self.counters.packets_skipped_awaiting_keyframe += 1
                return output
            if not self._has_parameter_sets(packet, output):
                return output
            self._awaiting_keyframe = False
        pts_us = self._presentation_time(packet)
        enter_fast_path_after_this_packet = False
        if packet.is_keyframe:
            self._note_keyframe(pts_us)
            keyframes_suffice = self._keyframes_suffice()
            if keyframes_suffice and not self._keyframes_only:
                # Decode this keyframe on the full path still: it may be the one nearest a pending tick.
                enter_fast_path_after_this_packet = True
            elif not keyframes_suffice and self._keyframes_only:
                self._leave_fast_path(output)

        if self._keyframes_only:
            if not packet.is_keyframe:
                self.counters.non_key_packets_skipped += 1
            elif self._selector is None:  # keyframes mode: every keyframe is analysed
                for pending in self._decode(packet, pts_us, output):
                    self._analyse_keyframe(pending, output)
            else:
                self._use(self._offer(pts_us, _UndecodedKeyframe(packet, pts_us)), output)
            return output

        for pending in self._decode(packet, pts_us, output):
            self._use(self._offer(pending.frame.pts, pending), output)
        if enter_fast_path_after_this_packet:
            self._keyframes_only = True
            if self._context is not None:
                self._context.skip_frame = "NONKEY"
        return output

    def flush(self) -> SamplerOutput:
        """End of stream: analyse what is still held back. A stream that carries on afterwards resumes at its
        next keyframe."""
        output = SamplerOutput()
        self._finish_timeline(output)
        return output

    # ----------------------------------------------------------------- stream continuity

    def _accept_in_order(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        stream_config = (packet.codec, packet.extradata or None)
        if packet.session_id != self._session_id:
            if self._session_id is not None:
                self.counters.session_changes += 1
            self._restart(stream_config, output)
            self._session_id = packet.session_id
        elif stream_config != self._stream_config:
            self.counters.stream_changes += 1
            self._restart(stream_config, output)
        elif self._last_sequence is not None and packet.sequence <= self._last_sequence:
            self.counters.out_of_order_packets += 1
            return False
        elif self._last_sequence is not None and packet.sequence != self._last_sequence + 1:
            self.counters.sequence_gaps += 1
            # Frames after a hole reference what was lost: start again from the next keyframe.
            self._restart(stream_config, output)
        self._last_sequence = packet.sequence
        return True

    def _restart(self, stream_config: tuple[str, bytes | None], output: SamplerOutput) -> None:
        """New decoder and timeline; decoding resumes at the next keyframe. Motion state is kept: same camera."""
        self._finish_timeline(output)
        self._stream_config = stream_config
        self._reset_timeline()

    def _finish_timeline(self, output: SamplerOutput) -> None:
        """Analyse everything the old timeline still holds, then drop the decoder."""
        selector = self._selector
        if selector is not None and isinstance(selector.held_item, _UndecodedKeyframe):
            self._use(selector.flush(), output)  # needs the decoder, so before draining it
        if self._context is not None and not self._awaiting_keyframe:
            for pending in self._drain_decoder(output):
                if selector is None:
                    self._analyse_keyframe(pending, output)
                elif not self._keyframes_only:
                    self._use(self._offer(pending.frame.pts, pending), output)
        if selector is not None:
            self._use(selector.flush(), output)
        self._discard_decoder()
        self._reset_timeline()

    def _discard_decoder(self) -> None:
        """Drop the decoder (and with it every reference frame); the next keyframe starts a fresh one."""
        if self._context is not None:
            self.counters.decoder_resets += 1
        self._context = None
        self._awaiting_keyframe = True

    # ----------------------------------------------------------------- decoding

    def _open_decoder(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        stream_config = (packet.codec, packet.extradata or None)
        if self._unsupported_config == stream_config:
            self.counters.unsupported_codec_packets += 1
            return False
        try:
            context = av.CodecContext.create(packet.codec, "r")
        except (av.error.FFmpegError, ValueError) as error:
            return self._unsupported(packet, f"no FFmpeg decoder named {packet.codec!r} ({error})", output)
        if not isinstance(context, VideoCodecContext):
            return self._unsupported(packet, f"codec {packet.codec!r} is not a video codec", output)
        self._unsupported_config = None
        if packet.extradata:
            context.extradata = packet.extradata
        context.thread_count = self.config.decoder_threads
        # Report damaged input as an error instead of concealing it into smeared frames.
        context.options = {"err_detect": "explode"}
        context.copy_opaque = True
        context.skip_frame = "NONKEY" if self._keyframes_only else "DEFAULT"
        self._context = context
        return True

    def _unsupported(self, packet: EncodedPacket, message: str, output: SamplerOutput) -> bool:
        self._unsupported_config = (packet.codec, packet.extradata or None)
        self.counters.unsupported_codec_packets += 1
        self._report(packet, "unsupported_codec", message, output)
        return False

    def _has_parameter_sets(self, packet: EncodedPacket, output: SamplerOutput) -> bool:
        """H.264/H.265 in MP4/RTSP form is undecodable without its extradata: say so instead of failing later."""
        if packet.codec not in LENGTH_PREFIXED_CODECS or packet.extradata:
            return True
        if packet.data.startswith(ANNEX_B_START_CODES):
            return True  # Annex B byte stream: parameter sets travel in-band
        self.counters.missing_extradata_errors += 1
        self._report(
            packet,
            "missing_extradata",
            f"{packet.codec} keyframe is length-prefixed (avcC/hvcC) but the packet has no extradata; "
            "the ingest service must forward the stream's codec configuration",
            output,
        )
        return False

    def _presentation_time(self, packet: EncodedPacket) -> int | None:
        pts_us = packet.pts_us if packet.pts_us is not None else packet.dts_us
        if pts_us is None:
            self.counters.packets_without_timestamp += 1
            if self._last_pts_us is not None and self._pts_spacing_us is not None:
                pts_us = self._last_pts_us + self._pts_spacing_us  # RTSP: the first frame may carry no pts
        if pts_us is not None:
            if self._last_pts_us is not None and pts_us > self._last_pts_us:
                self._pts_spacing_us = pts_us - self._last_pts_us
            self._last_pts_us = pts_us
        return pts_us

    def _note_keyframe(self, pts_us: int | None) -> None:
        if pts_us is None:
            return
        if self._last_keyframe_pts_us is not None and pts_us > self._last_keyframe_pts_us:
            self._keyframe_interval_us = pts_us - self._last_keyframe_pts_us
        self._last_keyframe_pts_us = pts_us

    def _keyframes_suffice(self) -> bool:
        if self._period_us is None:
            return True
        if self._keyframe_interval_us is None:
            return False
        return self._period_us >= self._keyframe_interval_us * (1 - KEYFRAME_INTERVAL_TOLERANCE)

    def _leave_fast_path(self, output: SamplerOutput) -> None:
        """Keyframes became too rare for the rate: decode everything from this keyframe on."""
        assert self._selector is not None
        held = self._selector.held_item
        if isinstance(held, _UndecodedKeyframe):
            # Decode the held keyframe now, before this keyframe, so the decoder's references stay in order.
            frames = [p for p in self._decode(held.packet, held.pts_us, output) if p.info.is_keyframe]
            self._selector.replace_held(frames[0] if frames else None)
        self._keyframes_only = False
        if self._context is not None:
            self._context.skip_frame = "DEFAULT"

    def _decode(self, packet: EncodedPacket, pts_us: int | None, output: SamplerOutput) -> list[_PendingFrame]:
        if self._context is None:  # a held packet outlived its decoder (bad input in between)
            return []
        av_packet = av.Packet(packet.data)
        av_packet.pts = pts_us
        av_packet.dts = packet.dts_us if packet.dts_us is not None else pts_us
        av_packet.time_base = MICROSECONDS
        av_packet.opaque = PacketFacts(packet.sequence, packet.capture_time_ms, packet.is_keyframe, packet.session_id)
        self.counters.packets_decoded += 1
        if not packet.is_keyframe:
            self.counters.non_key_packets_decoded += 1
        try:
            frames = self._context.decode(av_packet)
        except av.error.FFmpegError as error:
            self.counters.decode_errors += 1
            self._report(packet, "decode_error", f"{packet.codec} decoder rejected the packet: {error}", output)
            self._discard_decoder()
            return []
        return self._collect(frames, packet, output)

    def _drain_decoder(self, output: SamplerOutput) -> list[_PendingFrame]:
        """Frames the decoder still holds back (B-frame reordering). The decoder is finished after this."""
        assert self._context is not None
        context = self._context
        self._discard_decoder()
        try:
            frames = context.decode(None)
        except av.error.FFmpegError as error:
            self.counters.decode_errors += 1
            self.last_issue = DecodeIssue(
                self.camera_id,
                self._session_id or "",
                self._last_sequence or 0,
                "decode_error",
                f"camera {self.camera_id!r}: decoder failed while draining at end of stream: {error}",
            )
            output.issues.append(self.last_issue)
            return []
        return self._collect(frames, None, output)

    def _collect(
        self, frames: list[av.VideoFrame], packet: EncodedPacket | None, output: SamplerOutput
    ) -> list[_PendingFrame]:
        pending: list[_PendingFrame] = []
        for frame in frames:
            info = frame.opaque
            if not isinstance(info, PacketFacts):
                continue  # cannot happen with copy_opaque; a frame without its packet's facts is unusable
            if frame.is_corrupt:
                self.counters.corrupt_frames += 1
                if packet is not None:
                    self._report(packet, "corrupt_frame", "the decoder flagged the frame as corrupt", output)
                self._discard_decoder()
                return pending
            self.counters.frames_decoded += 1
            pending.append(_PendingFrame(frame, info))
        return pending

    # ----------------------------------------------------------------- sampling and gating

    def _offer(self, pts_us: int | None, sample: _Sample) -> list[_Sample]:
        assert self._selector is not None
        if pts_us is None:
            return self._selector.offer_untimed(sample)
        return self._selector.offer(pts_us, sample)

    def _use(self, samples: list[_Sample], output: SamplerOutput) -> None:
        for sample in samples:
            if isinstance(sample, _PendingFrame):
                self._analyse(sample, output)
            else:
                for pending in self._decode(sample.packet, sample.pts_us, output):
                    self._analyse_keyframe(pending, output)

    def _analyse_keyframe(self, pending: _PendingFrame, output: SamplerOutput) -> None:
        # With B-frames a decoder can release a full-path frame late, after the switch to keyframes only;
        # the selector has dealt with that frame's tick already.
        if pending.info.is_keyframe:
            self._analyse(pending, output)

    def _analyse(self, pending: _PendingFrame, output: SamplerOutput) -> None:
        self.gate.analyse(pending.frame, pending.info, self.counters, output)

    def _report(self, packet: EncodedPacket, kind: IssueKind, message: str, output: SamplerOutput) -> None:
        issue = DecodeIssue(
            camera_id=self.camera_id,
            session_id=packet.session_id,
            sequence=packet.sequence,
            kind=kind,
            message=f"camera {self.camera_id!r} packet {packet.sequence}: {message}; skipping to the next keyframe",
        )
        self.last_issue = issue
        output.issues.append(issue)
