"""Reproduce models/ppocr-v4-det.onnx: the PP-OCRv4 text-region detector (DBNet) from the PyPI wheel
`rapidocr-onnxruntime` 1.4.4 (Apache-2.0), used to find licence plates inside vehicle boxes.

    python models/extract_ppocr_det.py [--wheel rapidocr_onnxruntime-1.4.4-py3-none-any.whl]

The file is taken as shipped (its input dims are already dynamic); wheel and member are checked
against pinned sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
MEMBER_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("ppocr-v4-det.onnx"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "rapidocr-onnxruntime==1.4.4", "-d", scratch],
                check=True,
            )
            wheel = Path(scratch) / WHEEL
        if hashlib.sha256(wheel.read_bytes()).hexdigest() != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: not the pinned wheel (sha256 {WHEEL_SHA256})")
        with zipfile.ZipFile(wheel) as archive:
            model = archive.read(MEMBER)
    if hashlib.sha256(model).hexdigest() != MEMBER_SHA256:
        raise SystemExit(f"{MEMBER}: not the pinned model (sha256 {MEMBER_SHA256})")
    args.output.write_bytes(model)
    print(f"{args.output}: {len(model)} bytes, sha256 {MEMBER_SHA256}")


if __name__ == "__main__":
    main()
