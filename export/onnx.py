"""Entry point: ``python export/onnx.py CARD --out DIR [--fused] [--opset 17]`` = ``cityserve export onnx``."""

import os
import sys

# This file is named onnx.py: drop its own folder from sys.path so `import onnx` finds the real package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]

from cityserve.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", "onnx"] + sys.argv[1:]))
