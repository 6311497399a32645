"""Cost of masked re-encoding (libs/video_masking.py) per frame on the real sample, detecting on every
frame against every k-th frame, with the bare decode + x264 encode of the same frames as the limit.

    PYTHONPATH=. python bench/video_masking.py [--start 25 --seconds 10] [--every 1 3 5] [--json out.json]

CPU time (this process, ONNX Runtime and x264 on one thread each) is the main figure: on a shared
machine wall time mostly measures the neighbours. Coverage: of the regions that detection on each frame
itself finds (faces, heads of people scoring >= 0.45), the share of their area masked on that frame
by the k-th-frame run (1.0 = nothing left bare on any in-between frame).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from libs.masking import FaceDetector, Region
from libs.video_masking import MaskedVideoEncoder, VideoMaskingSettings, mask_mp4, model_people

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-h264.mp4"


def cut(start_s: float, seconds: float) -> bytes:
    buffer = io.BytesIO()
    with av.open(str(SAMPLE)) as source, av.open(buffer, "w", format="mp4") as target:
        stream = source.streams.video[0]
        out = target.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            at = float(packet.pts * stream.time_base)
            if at >= start_s + seconds:
                break
            if at >= start_s:
                packet.stream = out
                target.mux(packet)
    return buffer.getvalue()


def bare(data: bytes, settings: VideoMaskingSettings) -> tuple[int, float, float]:
    """Decode + x264 encode with the masked encoder's settings, no detection, no masking."""
    cpu, wall, frames = time.process_time(), time.perf_counter(), 0
    with av.open(io.BytesIO(data)) as source:
        stream = source.streams.video[0]
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = (
            stream.codec_context.width,
            stream.codec_context.height,
            "yuv420p",
        )
        encoder.time_base, encoder.thread_count = stream.time_base, settings.encoder_threads
        encoder.options = {"preset": settings.preset, "crf": str(settings.crf), "bf": "0"}
        for frame in source.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")  # the masked path converts too
            out = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            out.pts, out.time_base = frame.pts, stream.time_base
            encoder.encode(out)
            frames += 1
        encoder.encode(None)
    return frames, time.process_time() - cpu, time.perf_counter() - wall


def coverage(region: Region, masked: list[Region], shape: tuple[int, int]) -> float:
    mask = np.zeros(shape, bool)
    for other in masked:
        mask[other.y1 : other.y2, other.x1 : other.x2] = True
    inside = mask[region.y1 : region.y2, region.x1 : region.x2]
    return float(inside.mean()) if inside.size else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = cut(args.start, args.seconds)
    faces, people, sure = FaceDetector(), model_people(), model_people(min_score=0.45)
    base = VideoMaskingSettings()
    frames, cpu, wall = bare(data, base)
    rows = [
        {
            "setting": "bare decode + x264",
            "frames": frames,
            "cpu_ms": 1000 * cpu / frames,
            "wall_ms": 1000 * wall / frames,
        }
    ]
    probe = MaskedVideoEncoder(768, 576, Fraction(1, 10240), base, faces, sure)
    with av.open(io.BytesIO(data)) as source:
        found = {f.pts: probe.detect(f.to_ndarray(format="rgb24")) for f in source.decode(video=0)}
    for with_people in (False, True):
        for every in args.every:
            settings = base.model_copy(update={"detect_every": every})
            masked: dict[int, list[Region]] = {}
            cpu, wall = time.process_time(), time.perf_counter()
            _out, stats = mask_mp4(data, settings, faces, people if with_people else None, observe=masked.__setitem__)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            row = {
                "setting": f"CenterFace{' + people (CenterNet)' if with_people else ''}, detect every {every}",
                "frames": stats.frames,
                "cpu_ms": 1000 * cpu / stats.frames,
                "wall_ms": 1000 * wall / stats.frames,
                "detect_ms_per_detection": 1000 * stats.detect_s / max(1, stats.detections),
                "mask_encode_ms": 1000 * stats.mask_encode_s / stats.frames,
            }
            if with_people:
                covered = [coverage(r, masked[pts], (576, 768)) for pts, regions in found.items() for r in regions]
                row["regions_checked"], row["min_coverage"] = len(covered), min(covered)
            rows.append(row)
    print("| setting | frames | CPU ms/frame | wall ms/frame | ms per detection | mask+encode ms/frame | coverage |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        cov = f"{r['min_coverage']:.2f} min over {r['regions_checked']}" if "min_coverage" in r else ""
        print(
            f"| {r['setting']} | {r['frames']} | {r['cpu_ms']:.0f} | {r['wall_ms']:.0f} | "
            f"{r.get('detect_ms_per_detection', 0):.0f} | {r.get('mask_encode_ms', 0):.0f} | {cov} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
