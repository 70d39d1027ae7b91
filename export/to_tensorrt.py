"""Entry point: ``python export/to_tensorrt.py render.onnx --out render.plan [...]`` = ``cityserve export tensorrt``."""

import sys

from cityserve.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "tensorrt"] + sys.argv[1:]))
