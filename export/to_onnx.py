"""Entry point: ``python export/to_onnx.py CARD --out DIR [--fused] [--opset 17]`` = ``cityserve export onnx``."""

import sys

from cityserve.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "onnx"] + sys.argv[1:]))
