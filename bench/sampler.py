"""Frame-sampler: PacketHandler.handle (the service's handler) on the keyframe path against a bare PyAV
keyframe-only decode of the same packets; CPU per camera at 1 fps sampling of a 720p 15 fps stream."""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

from bench.common import SAMPLE_H264, CpuMeter, Result


def video_packet_values(path: Path, camera_id: str, loops: int = 1) -> list[dict[str, Any]]:
    """The clip's packets as VideoPacket values, shaped exactly as ingest publishes them (µs times,
    stream header on keyframes), looped with increasing timestamps."""
    values: list[dict[str, Any]] = []
    offset_us = 0
    sequence = 0
    capture_us = time.time_ns() // 1000
    for _loop in range(loops):
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            context = video.codec_context
            time_base = video.time_base or Fraction(1, 90_000)
            header = {
                "codec": context.name,
                "extradata": bytes(context.extradata) if context.extradata else None,
                "time_base_num": 1,
                "time_base_den": 1_000_000,
                "width": context.width,
                "height": context.height,
            }
            last_end = offset_us
            for packet in container.demux(video):
                if packet.size == 0:
                    continue
                pts = int(packet.pts * time_base * 1_000_000) + offset_us
                dts = int(packet.dts * time_base * 1_000_000) + offset_us if packet.dts is not None else None
                duration = int(packet.duration * time_base * 1_000_000) if packet.duration else 0
                last_end = max(last_end, pts + duration)
                key = bool(packet.is_keyframe)
                values.append(
                    {
                        "camera_id": camera_id,
                        "session_id": "bench-session",
                        "sequence": sequence,
                        "capture_time": capture_us + pts,
                        "pts_us": pts,
                        "dts_us": dts,
                        "duration_us": duration or None,
                        "is_keyframe": key,
                        "data": bytes(packet),
                        **(header if key else dict.fromkeys(header)),
                    }
                )
                sequence += 1
            offset_us = last_end
    return values


def _incoming(values: list[dict[str, Any]]) -> list[Any]:
    from libs.kafka import Incoming
    from libs.topics import VIDEO_PACKETS

    return [
        Incoming(VIDEO_PACKETS, 0, offset, value["camera_id"].encode(), value, None, raw=None)  # type: ignore[arg-type]
        for offset, value in enumerate(values)
    ]


def _service(values: list[dict[str, Any]], sampling: dict[str, Any] | None, batch_size: int = 500) -> dict[str, Any]:
    from services.frame_sampler.config import FrameSamplerConfig
    from services.frame_sampler.main import PacketHandler

    config = FrameSamplerConfig(**({"sampling": sampling} if sampling else {}))
    sampler = PacketHandler(config, inventory=None)
    records = _incoming(values)
    frames = 0
    with CpuMeter() as meter:
        for start in range(0, len(records), batch_size):
            outputs, _rejected = sampler.handle(records[start : start + batch_size])
            frames += sum(1 for out in outputs if out.schema == "Frame")
    counters = next(iter(sampler.cameras.cameras.values())).decoder.counters
    return {
        "cpu_s": meter.cpu_s,
        "wall_s": meter.wall_s,
        "frames_out": frames,
        "frames_decoded": counters.frames_decoded,
        "frames_analysed": counters.frames_analysed,
        "packets_decoded": counters.packets_decoded,
    }


def _bare(values: list[dict[str, Any]], keyframes_only: bool, jpeg: bool = False) -> dict[str, Any]:
    """A bare decoder fed the same packets: skip_frame NONKEY (or everything), optionally JPEG every frame."""
    import simplejpeg

    first = values[0]
    frames = 0
    with CpuMeter() as meter:
        context = av.CodecContext.create(first["codec"], "r")
        if first["extradata"]:
            context.extradata = first["extradata"]
        context.thread_count = 1
        if keyframes_only:
            context.skip_frame = "NONKEY"
        for value in values:
            packet = av.Packet(value["data"])
            packet.pts, packet.dts = value["pts_us"], value["dts_us"]
            for frame in context.decode(packet):
                frames += 1
                if jpeg:
                    planes = [
                        np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size)[:, : p.width]
                        for p in frame.planes
                    ]
                    simplejpeg.encode_jpeg_yuv_planes(*planes, quality=80, fastdct=True)
        for _frame in context.decode(None):
            frames += 1
    return {"cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "frames": frames}


def keyframe_worker(loops: int) -> dict[str, Any]:
    values = video_packet_values(SAMPLE_H264, "bench-sampler", loops)
    stream_s = (values[-1]["pts_us"] - values[0]["pts_us"]) / 1e6
    return {
        "service": _service(values, None),
        "bare": _bare(values, keyframes_only=True),
        "bare_jpeg": _bare(values, keyframes_only=True, jpeg=True),
        "stream_s": stream_s,
        "keyframes": sum(1 for v in values if v["is_keyframe"]),
        "packets": len(values),
    }


def make_720p_clip(directory: Path, gop_frames: int, max_frames: int) -> Path:
    """1280x720 15 fps H.264 (no B-frames, fixed GOP, like an IP camera's main stream) from the sample."""
    target = directory / f"vtest-720p15-gop{gop_frames}.mp4"
    with av.open(str(SAMPLE_H264)) as source, av.open(str(target), "w") as sink:
        stream = sink.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "bframes": "0",
            "g": str(gop_frames),
            "keyint_min": str(gop_frames),
            "sc_threshold": "0",
            "crf": "26",
        }
        for index, frame in enumerate(source.decode(video=0)):
            if index >= max_frames:
                break
            scaled = frame.reformat(width=1280, height=720, format="yuv420p")
            scaled.pts, scaled.time_base = index, Fraction(1, 15)
            scaled.pict_type = PictureType.NONE  # let the encoder's GOP decide, not the source's keyframes
            for packet in stream.encode(scaled):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return target


def hd_worker(gop_frames: int, max_frames: int, loops: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cctv-bench-") as directory:
        clip = make_720p_clip(Path(directory), gop_frames, max_frames)
        values = video_packet_values(clip, "bench-720p", loops)
    stream_s = (values[-1]["pts_us"] - values[0]["pts_us"]) / 1e6
    fast_path = gop_frames <= 15
    return {
        "service": _service(values, {"mode": "fps", "fps": 1}),
        "bare": _bare(values, keyframes_only=fast_path),
        "stream_s": stream_s,
        "fast_path": fast_path,
        "mean_packet_bytes": float(np.mean([len(v["data"]) for v in values])),
    }


def run(quick: bool, step: Any) -> list[Result]:
    from bench.common import run_worker

    results: list[Result] = []
    step("frame-sampler: keyframe path vs bare NONKEY decode")
    measured = run_worker("sampler:keyframe_worker", {"loops": 2 if quick else 6})
    service, bare, bare_jpeg = measured["service"], measured["bare"], measured["bare_jpeg"]
    params = {
        "clip": "vtest-h264.mp4 768x576 10 fps, keyframe every 1 s",
        "sampling": "keyframes",
        "keyframes": measured["keyframes"],
        "packets": measured["packets"],
        "frames_published": service["frames_out"],
    }
    service_fps = service["frames_analysed"] / service["wall_s"]
    results.append(
        Result.throughput(
            "frame-sampler",
            "keyframes per second (vs bare decode)",
            "frames/s",
            round(service_fps, 1),
            round(bare["frames"] / bare["wall_s"], 1),
            **params,
        )
    )
    results.append(
        Result.throughput(
            "frame-sampler",
            "keyframes per second (vs bare decode + JPEG)",
            "frames/s",
            round(service_fps, 1),
            round(bare_jpeg["frames"] / bare_jpeg["wall_s"], 1),
            **params,
        )
    )
    for gop, label in ((15, "GOP 1 s (keyframes suffice: fast path)"), (30, "GOP 2 s (full decode)")):
        if quick and gop == 30:
            continue
        step(f"frame-sampler: 720p15 at 1 fps, {label}")
        hd = run_worker(
            "sampler:hd_worker", {"gop_frames": gop, "max_frames": 225 if quick else 450, "loops": 1 if quick else 2}
        )
        results.append(
            Result.cost(
                "frame-sampler",
                f"CPU per camera, 720p15 sampled at 1 fps, {label}",
                "cores/camera",
                round(hd["service"]["cpu_s"] / hd["stream_s"], 5),
                round(hd["bare"]["cpu_s"] / hd["stream_s"], 5),
                stream="1280x720 H.264 15 fps, no B-frames",
                gop_frames=gop,
                stream_s=round(hd["stream_s"], 1),
                frames_decoded=hd["service"]["frames_decoded"],
                frames_published=hd["service"]["frames_out"],
                mean_packet_bytes=round(hd["mean_packet_bytes"]),
                bare_loop="NONKEY decode of every packet" if hd["fast_path"] else "full decode of every packet",
                sampling_fps=1.0,
            )
        )
    return results
