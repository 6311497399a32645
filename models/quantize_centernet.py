#!/usr/bin/env python3
"""Make the INT8 variant of the default CenterNet detector, with any input size a multiple of 32.

Two steps on models/centernet-mobilenetv3-coco.onnx (FP32, 512x512 fixed), with the project venv
(onnxruntime's own quantisation tools, no TensorFlow):

1. Any input size: the network itself is fully convolutional; only the decode after it hard-codes
   the 128x128 heat map of a 512 input (two Reshapes to [-1, 128*128*80] and [-1, 128*128, 4], and the
   floor-division by 128 that turns a flat peak index into row/column). Those three constants are
   replaced by shape-driven values (Reshape to [batch, -1], width read from the heat map's shape), so
   the graph computes exactly the same at 512 and also runs at 384, 320, ... (checked below).
2. Static INT8 quantisation (onnxruntime.quantization.quantize_static), calibrated on real frames:
   CALIBRATION_FRAMES evenly spaced frames of the first half of samples/vtest-h264.mp4 (the second
   half is kept for evaluation, bench/detector_int8.py), letterboxed to 512 as the service does.
   Weights int8 per channel, activations uint8. Only convolutions are quantised, and not the two
   heads' last 1x1 convolutions (class logits, box sizes) nor the decode after them. Measured on the
   real stills (bus.jpg, zidane.jpg) while choosing: quantising every op lost the bus and both
   people in zidane.jpg (MinMax and 99.99 percentile calibration alike); the culprits were the
   elementwise Mul/Add of MobileNetV3's hard-swish and squeeze-excite blocks; a quantised class-logit
   conv made scores coarse (0.21, 0.26, 0.31, ...), so neighbouring heat-map peaks tie.

    PYTHONPATH=. .venv/bin/python models/quantize_centernet.py            # QDQ (the shipped file)
    PYTHONPATH=. .venv/bin/python models/quantize_centernet.py --format qoperator --output /tmp/q.onnx
    PYTHONPATH=. .venv/bin/python models/quantize_centernet.py --fp32-dynamic-output /tmp/fp32-dyn.onnx

MinMax calibration is deterministic, so with the pinned onnxruntime the output is byte-identical
run to run; the sha256 is checked against PINNED_INT8_SHA256 (a mismatch is reported, not fatal,
because another onnxruntime version may lay the graph out differently).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

MODELS_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODELS_DIR.parent
FP32_MODEL = MODELS_DIR / "centernet-mobilenetv3-coco.onnx"
INT8_MODEL = MODELS_DIR / "centernet-mobilenetv3-coco-int8.onnx"
SAMPLE_CLIP = REPO_ROOT / "samples" / "vtest-h264.mp4"
CALIBRATION_FRAMES = 48
CALIBRATION_SIZE = 512
PINNED_INT8_SHA256 = "5b702f54ec9a93a3af10b42bd8c8ba498e39f54acca9f46eec942e600c717613"  # onnxruntime 1.32.0

# Names in the converted graph (models/convert_centernet.py, tf2onnx) that carry the 512-only shape.
HEATMAP_RESHAPE = "Reshape"  # [-1, 128*128*80] before top-k
BOXES_RESHAPE = "Reshape_1"  # [-1, 128*128, 4] before the box gather
ROW_DIVISION = ("Div__541", "Mul__543")  # flat cell index // 128 and * 128 (row, column)
SIZE_CONSTANTS = ("const_fold_opt__1097", "const_fold_opt__1145", "floordiv_1/y:0")  # replaced, then unused
HEATMAP_NHWC = "Transpose__1192:0"  # [batch, H/4, W/4, 80]
# The heads' last convolutions (class logits, box sizes) stay FP32 (see the module docstring).
FLOAT_HEAD_SUFFIX = "_output/BiasAdd/BiasAdd"
QUANTISED_OPS = ["Conv"]


def make_input_size_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy whose input is [batch, size, size, 3] for any size a multiple of 32."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[1].ClearField("dim_value")
    dims[1].dim_param = "height"
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "width"
    del graph.value_info[:]  # inferred 128x128 shapes would contradict the new input
    nodes = {node.name: node for node in graph.node}
    for name in (HEATMAP_RESHAPE, BOXES_RESHAPE, *ROW_DIVISION):
        if name not in nodes:
            raise SystemExit(f"{name} not in {FP32_MODEL.name}: the converter changed; update this script")

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    # Reshape to [batch, -1] / [batch, -1, 4]: 0 copies the batch dimension.
    nodes[HEATMAP_RESHAPE].input[1] = constant("dynsize_flat_shape", np.array([0, -1], dtype=np.int64))
    nodes[BOXES_RESHAPE].input[1] = constant("dynsize_boxes_shape", np.array([0, -1, 4], dtype=np.int64))
    # Heat-map width (W/4), as int32 like the flat index it divides.
    width_nodes = [
        helper.make_node("Shape", [HEATMAP_NHWC], ["dynsize_heatmap_shape"], name="dynsize_shape", start=2, end=3),
        helper.make_node(
            "Cast", ["dynsize_heatmap_shape"], ["dynsize_width"], name="dynsize_width_cast", to=onnx.TensorProto.INT32
        ),
    ]
    for name in ROW_DIVISION:
        nodes[name].input[1] = "dynsize_width"
    unused = set(SIZE_CONSTANTS)
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    position = list(graph.node).index(nodes[HEATMAP_RESHAPE])
    for offset, node in enumerate(width_nodes):
        graph.node.insert(position + offset, node)
    onnx.checker.check_model(model)
    return model


def sample_frames(first: float, last: float, count: int) -> list[np.ndarray]:
    """`count` evenly spaced RGB frames from the [first, last) fraction of the sample clip."""
    import av

    with av.open(str(SAMPLE_CLIP)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    start, stop = int(len(frames) * first), int(len(frames) * last)
    indices = np.linspace(start, stop - 1, count).round().astype(int)
    return [frames[index] for index in indices]


def model_inputs(frames: list[np.ndarray], size: int) -> np.ndarray:
    """Letterboxed float32 NHWC tensor, exactly as the detector service prepares frames."""
    from services.detector.preprocess import fit_image

    return np.stack([fit_image(frame, size, "letterbox", 0)[0].astype(np.float32) for frame in frames])


class FrameReader:
    """onnxruntime CalibrationDataReader over the calibration frames, one frame per call."""

    def __init__(self, tensor: np.ndarray) -> None:
        self._rows: Iterator[np.ndarray] = iter(tensor)

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {"images": row[None]}


def quantize(fp32_dynamic: Path, output: Path, quant_format: str) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(fp32_dynamic))
    exclude = [node.name for node in model.graph.node if node.name.endswith(FLOAT_HEAD_SUFFIX)]
    frames = sample_frames(0.0, 0.5, CALIBRATION_FRAMES)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_dynamic), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            FrameReader(model_inputs(frames, CALIBRATION_SIZE)),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            op_types_to_quantize=QUANTISED_OPS,
        )
    quantized = onnx.load(str(output))
    source_meta = {entry.key: entry.value for entry in model.metadata_props}
    del quantized.metadata_props[:]
    for key, value in {
        **source_meta,
        "quantization": f"int8 static {quant_format}, convolutions only, minmax, "
        f"{CALIBRATION_FRAMES} frames of the first half of {SAMPLE_CLIP.name}",
    }.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(output))


def check_same_as_fp32(fp32: Path, dynamic: Path) -> None:
    """The size-dynamic graph must give bit-identical output to the original at 512."""
    import onnxruntime

    tensor = model_inputs(sample_frames(0.5, 1.0, 2), 512)
    outputs = []
    for path in (fp32, dynamic):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"images": tensor})[0])
    difference = float(np.abs(outputs[0] - outputs[1]).max())
    if difference != 0.0:
        raise SystemExit(f"size-dynamic graph differs from the original at 512 (max |diff| {difference})")
    small = onnxruntime.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    for size in (384, 320):
        shape = small.run(None, {"images": model_inputs(sample_frames(0.5, 1.0, 2), size)})[0].shape
        if shape != (2, 100, 6):
            raise SystemExit(f"size-dynamic graph gives {shape} at {size}")
    print("size-dynamic graph: identical to the original at 512 (max |diff| 0.0), runs at 384 and 320")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=INT8_MODEL)
    parser.add_argument("--format", choices=("qdq", "qoperator"), default="qdq")
    parser.add_argument("--fp32-dynamic-output", type=Path, help="also keep the FP32 any-size graph here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        dynamic = args.fp32_dynamic_output or Path(scratch) / "fp32-dynamic.onnx"
        onnx.save(make_input_size_dynamic(onnx.load(str(FP32_MODEL))), str(dynamic))
        check_same_as_fp32(FP32_MODEL, dynamic)
        quantize(dynamic, args.output, args.format)
    digest = sha256(args.output)
    print(f"{args.output}: {args.output.stat().st_size:,} bytes, sha256 {digest}")
    if args.output == INT8_MODEL and PINNED_INT8_SHA256 and digest != PINNED_INT8_SHA256:
        print(
            f"note: sha256 differs from the pinned {PINNED_INT8_SHA256} (other onnxruntime version?)", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
