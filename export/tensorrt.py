"""Entry point: ``python export/tensorrt.py render.onnx --out render.plan [...]`` = ``cityserve export tensorrt``."""

import os
import sys

# This file is named tensorrt.py: drop its own folder from sys.path so the real TensorRT package is found.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]

from cityserve.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", "tensorrt"] + sys.argv[1:]))
