"""Rebuild the sample camera footage in this directory from Debian's opencv-doc package.

Usage (from the repository root, with the project venv):

    .venv/bin/python samples/make_samples.py                 # fetches the .deb with `apt-get download`
    .venv/bin/python samples/make_samples.py --deb PATH.deb  # or use a .deb you already have
    .venv/bin/python samples/make_samples.py --avi PATH/vtest.avi

Outputs (see samples/README.md):
    samples/vtest-h264.mp4    768x576, 10 fps, 795 frames, H.264 Main, keyframe every 10 frames (1 s)
    samples/vtest-360p15.mp4  640x360, 15 fps, 1192 frames, H.264 Main, keyframe every 15 frames (1 s)

Both are yuv420p, have no B-frames (as most IP cameras stream), carry no audio and have the
`moov` atom up front (+faststart). x264 runs single-threaded with fixed settings so that the
output is byte-for-byte reproducible for a given PyAV/libx264 build.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

OPENCV_DOC_PACKAGE = "opencv-doc"
VTEST_PATH_IN_DEB = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
SAMPLES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class VariantSpec:
    """One output file: geometry, frame rate and encoder quality."""

    file_name: str
    width: int
    height: int
    fps: int
    crf: int


VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("vtest-h264.mp4", width=768, height=576, fps=10, crf=31),
    VariantSpec("vtest-360p15.mp4", width=640, height=360, fps=15, crf=32),
)


def x264_options(keyframe_interval: int, crf: int) -> dict[str, str]:
    """Encoder options: fixed GOP (no scene-cut keyframes), no B-frames, deterministic output."""
    return {
        "preset": "medium",
        "profile": "main",
        "crf": str(crf),
        "g": str(keyframe_interval),
        "keyint_min": str(keyframe_interval),
        "sc_threshold": "0",  # keyframes exactly every `g` frames, never extra ones on scene cuts
        "bf": "0",
        "threads": "1",  # x264 output depends on the thread count; pin it for reproducibility
        # Repeat SPS/PPS in-band before every IDR so RTSP clients that join late can decode.
        "x264-params": "repeat-headers=1:aud=0",
    }


def extract_vtest_from_deb(deb_path: Path, destination_dir: Path) -> Path:
    """Pull only vtest.avi out of the opencv-doc .deb (dpkg-deb --fsys-tarfile | tar)."""
    tar_stream = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb_path)], stdout=subprocess.PIPE)
    assert tar_stream.stdout is not None
    with tarfile.open(fileobj=tar_stream.stdout, mode="r|") as archive:
        for member in archive:
            if member.name == VTEST_PATH_IN_DEB:
                extracted = archive.extractfile(member)
                assert extracted is not None
                target = destination_dir / "vtest.avi"
                target.write_bytes(extracted.read())
                break
        else:
            raise SystemExit(f"{VTEST_PATH_IN_DEB} not found in {deb_path}")
        # Drain the rest so dpkg-deb exits normally instead of dying of SIGPIPE.
        while tar_stream.stdout.read(1 << 20):
            pass
    tar_stream.stdout.close()
    if tar_stream.wait() != 0:
        raise SystemExit(f"dpkg-deb --fsys-tarfile {deb_path} failed with exit code {tar_stream.returncode}")
    return target


def download_opencv_doc(destination_dir: Path) -> Path:
    subprocess.run(["apt-get", "download", OPENCV_DOC_PACKAGE], cwd=destination_dir, check=True)
    debs = sorted(destination_dir.glob(f"{OPENCV_DOC_PACKAGE}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download {OPENCV_DOC_PACKAGE} produced no .deb in {destination_dir}")
    return debs[-1]


def decode_source_frames(avi_path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Decode every source frame to RGB24 (795 frames of 768x576 is about 1 GB; fine for a one-off build)."""
    with av.open(str(avi_path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        if rate is None:
            raise SystemExit(f"{avi_path}: stream has no frame rate")
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames, Fraction(rate)


def crop_to_aspect(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio so people are not stretched (4:3 source -> 16:9)."""
    source_height, source_width = rgb.shape[:2]
    target_aspect = Fraction(width, height)
    if Fraction(source_width, source_height) > target_aspect:
        keep_width = int(source_height * target_aspect) // 2 * 2
        left = (source_width - keep_width) // 2
        return rgb[:, left : left + keep_width]
    keep_height = int(source_width / target_aspect) // 2 * 2
    top = (source_height - keep_height) // 2
    return rgb[top : top + keep_height]


def encode_variant(source_frames: list[np.ndarray], source_rate: Fraction, spec: VariantSpec, output: Path) -> None:
    duration_s = Fraction(len(source_frames)) / source_rate
    output_frame_count = int(duration_s * spec.fps)
    with av.open(str(output), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=spec.fps, options=x264_options(spec.fps, spec.crf))
        stream.width = spec.width
        stream.height = spec.height
        stream.pix_fmt = "yuv420p"
        for output_index in range(output_frame_count):
            # Frame-rate conversion by picking the source frame shown at this output instant.
            source_index = min(int(Fraction(output_index, spec.fps) * source_rate), len(source_frames) - 1)
            rgb = crop_to_aspect(source_frames[source_index], spec.width, spec.height)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(width=spec.width, height=spec.height, format="yuv420p", interpolation="AREA")
            frame.pts = output_index
            frame.time_base = Fraction(1, spec.fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def describe(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        keyframes = sum(1 for p in packets if p.is_keyframe)
        profile = stream.codec_context.profile
    return (
        f"{path.name}: {path.stat().st_size} bytes, {stream.width}x{stream.height}, {len(packets)} frames, "
        f"{keyframes} keyframes, profile {profile}, sha256 {digest}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--deb", type=Path, help="an already downloaded opencv-doc_*.deb")
    source.add_argument("--avi", type=Path, help="an already extracted vtest.avi")
    parser.add_argument("--out-dir", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cctv-samples-") as work:
        work_dir = Path(work)
        if args.avi is not None:
            avi_path = args.avi
        else:
            deb_path = args.deb if args.deb is not None else download_opencv_doc(work_dir)
            avi_path = extract_vtest_from_deb(deb_path, work_dir)
        print(f"source: {avi_path} sha256 {hashlib.sha256(avi_path.read_bytes()).hexdigest()}")
        source_frames, source_rate = decode_source_frames(avi_path)
        print(f"decoded {len(source_frames)} frames at {source_rate} fps")
        for spec in VARIANTS:
            output = args.out_dir / spec.file_name
            encode_variant(source_frames, source_rate, spec, output)
            print(describe(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
