"""Rebuild the example repositories in this folder from the shipped demo models (models/demo/).

    python triton_models/examples/regenerate.py              # rewrites triton_models/examples/<target>/
    python triton_models/examples/regenerate.py --out DIR    # writes DIR/<target>/ instead

Each ``<target>/`` is what ``cityserve repo build --target <target> --configs-only`` writes for the
demo SPADE and the demo segmenter: every ``config.pbtxt``, the manifest and (gpu-trt) the engine
script, but no graphs, weights or python models. The cpu example pins ``--cpu-engine onnxruntime``
(``auto`` picks the AOT package on CPUs with BF16, so the example would depend on the machine). In the
manifest, ``created`` and ``command`` are replaced by fixed text so that a rerun changes nothing; the
graphs' sha256 depend on the torch/onnx versions that exported them. ``tests/test_repo_builder.py``
runs ``regenerate`` and compares its output with the committed files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cityserve.export.onnx_export import export_onnx
from cityserve.serving.repo import MANIFEST, build_repository

HERE = Path(__file__).resolve().parent
DEMO = HERE.parents[1] / "models" / "demo"
CARDS = ("spade-demo.card.json", "segmenter-demo.card.json")
TARGETS = {"cpu": {"cpu_engine": "onnxruntime"}, "gpu-onnx": {}, "gpu-trt": {}, "openvino": {}}
COMMAND = "python triton_models/examples/regenerate.py"
VOLATILE = {"created": "(not recorded in the examples)", "command": COMMAND}


def regenerate(out_root: Path, work_dir: Path) -> list[Path]:
    """Export the demo models into ``work_dir`` once, then write ``out_root/<target>/`` for each target."""
    exported = [export_onnx(DEMO / card, work_dir / card.split(".")[0]) for card in CARDS]
    written = []
    for target, overrides in TARGETS.items():
        out = out_root / target
        build_repository(exported, target, out, overrides=overrides, overwrite=True, configs_only=True)
        manifest_path = out / MANIFEST
        manifest = json.loads(manifest_path.read_text())
        manifest.update(VOLATILE)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE, help="where the <target>/ folders go (default: this folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cityserve-examples-") as tmp:
        for path in regenerate(args.out, Path(tmp)):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
