"""Build a Triton model repository from model cards, one per target (docs/architecture.md "Targets").

* ``cpu``: render / segment graphs run by onnxruntime, OpenVINO (``cpu_engine="openvino"``) or, for
  the render graph, an AOTInductor package, inside Triton's python backend (the server the
  nvidia-pytriton wheel ships has no other backend);
* ``gpu-onnx``: ``onnxruntime_onnx`` models (CUDA execution provider, optionally TensorRT's);
* ``gpu-trt``: ``tensorrt_plan`` models, engines built on the serving GPU by ``build_engines.sh``
  (or copied in with ``plans=``);
* ``openvino``: the graphs on Triton's own OpenVINO backend (CPU instances; the NGC container has it,
  the bundled server does not).

Per generator: ``render`` (raw tensors: label ids uint8 [B,1,H,W] in, RGB uint8 [B,H,W,3] out),
``decode_png`` (label PNG -> ids), ``prepare_render`` where the graph needs instances or a latent, and
the ``label2photo`` ensemble; on ``cpu`` (``pipeline="fused"``, the default) ``label2photo`` is
instead one python model doing all of it, so no tensor crosses between python stubs. Per segmenter: ``segment``, ``decode_photo``, ``encode_labels`` and the
``photo2labels`` ensemble. With both, ``photo2photo``. Per layout card, ``random_layout`` (and
``random2photo`` into the first generator: ``layout_models.py``). ``encode_png`` is shared. The first generator /
segmenter gets the plain names; later ones get ``_<card name>`` appended (a card name that is not a
usable model name is refused).

Each config is a Triton ``ModelConfig`` message (``configs.py``; ensembles from steps in
``ensembles.py``), the tensors of render/segment configs are read from the exported graph and checked
against it (``sources.py``), what each card gets is in ``card_models.py``, and the repository appears
at ``out_dir`` only when complete (``layout.py`` holds it until then).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from ..card_sections import DEFAULT_MAX_BATCH_SIZE, ServingOptions
from ..cards import CARD_SUFFIX, ModelCard, command_line, now_iso
from ..errors import CheckpointError, ConfigError
from ..extras import require
from . import configs as C
from .card_models import add_generator, add_photo2photo, add_segmenter, model_suffix, photo2photo_problem
from .configs import check_config_against_onnx, parse_config
from .depth_models import add_depth_pair, resolve_depth_pair
from .engine_script import ENGINE_SCRIPT, write_engine_script
from .layout import BuiltRepository, Repository
from .layout_models import add_layouts, split_layout_cards
from .sources import CardSpec, GraphSource, resolve_source

TARGETS = ("cpu", "gpu-trt", "gpu-onnx", "openvino")
MANIFEST = "cityserve_repo.json"
MANIFEST_FORMAT = "cityserve-repo/1"


def python_models_dir() -> Path:
    """The python-backend models shipped in the package (``cityserve/serving/triton_models/``), or
    where ``CITYSERVE_TRITON_MODELS`` points."""
    env = os.environ.get("CITYSERVE_TRITON_MODELS")
    path = Path(env) if env else Path(str(importlib.resources.files("cityserve.serving") / "triton_models"))
    if not (path / "decode_png" / "model.py").is_file():
        raise ConfigError(
            f"Triton python models not found at {path}; reinstall cityserve, or set CITYSERVE_TRITON_MODELS "
            f"to a cityserve/serving/triton_models/ directory"
        )
    return path


def serving_options(card: Optional[ModelCard], overrides: Optional[Mapping[str, Any]] = None) -> ServingOptions:
    """Defaults, then the card's ``serving`` section, then ``overrides``; every value is checked with
    its bounds."""
    if card is None:
        return ServingOptions.from_sources(overrides, where="serving options")
    own = dataclasses.asdict(card.serving) if card.serving is not None else None
    if own and own.get("trust_aot"):  # a card must not vouch for its own native code
        raise ConfigError(f"card {card.name!r}: trust_aot is not a card option; only the command line trusts")
    return ServingOptions.from_sources(own, overrides, where=f"card {card.name!r}")


# ---- the builder --------------------------------------------------------------------------------


def build_repository(
    cards: Iterable[CardSpec],
    target: str,
    out_dir: Union[str, os.PathLike],
    overrides: Optional[dict[str, Any]] = None,
    plans: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
    work_dir: Optional[Union[str, os.PathLike]] = None,
    configs_only: bool = False,
    depth_pair: Optional[tuple[CardSpec, CardSpec]] = None,
) -> BuiltRepository:
    """Write a Triton model repository for ``target`` serving ``cards`` (model cards, their
    weights/directories, or exported ``.onnx`` graphs) into ``out_dir``.

    ``overrides``: ServingOptions fields that win over the cards' own; ``plans``: card name (or model
    name) -> TensorRT engine file for the gpu-trt target; ``configs_only``: write the configs, the
    manifest and build_engines.sh but no version directories (for review, and the golden examples in
    triton_models/examples/); ``depth_pair``: (stage-1 depth card, stage-2 photo-from-depth card), served
    as ``depth_models.py`` describes. The repository is assembled in a temporary directory beside
    ``out_dir`` and moved into place only when complete.
    """
    require("serve", "tritonclient.grpc.model_config_pb2", "the repository builder")  # before any export
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(f"{out} exists and is not empty; pass --force to replace it")
        if out.is_dir() and not (out / MANIFEST).is_file():
            raise ConfigError(f"{out} is not a cityserve repository ({MANIFEST} missing); refusing to replace it")
    specs, layout_cards = split_layout_cards(cards)
    if not specs and not layout_cards and depth_pair is None:
        raise ConfigError("no model cards given: pass at least one generator or segmenter (--model CARD)")
    plans = {k: Path(v) for k, v in (plans or {}).items()}
    for k, p in plans.items():
        if not p.is_file():
            raise CheckpointError(f"TensorRT engine {p} (for {k}) does not exist")
    base = serving_options(None, overrides)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    own_work = work_dir is None
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="cityserve-export-"))
    try:
        sources = [resolve_source(s, work) for s in specs]
        gens = [s for s in sources if s.kind == "generator"]
        segs = [s for s in sources if s.kind == "segmenter"]
        repo = Repository(target, python_models_dir())
        notes: list[str] = []
        gen_opts = [serving_options(g.card, overrides) for g in gens]
        seg_opts = [serving_options(s.card, overrides) for s in segs]
        if gens:  # shared by every generator: as large a batch as the largest of theirs
            enc = dataclasses.replace(base, max_batch_size=max(o.max_batch_size for o in gen_opts))
            repo.python_model(C.encode_image("encode_png", enc), "encode_png", {"role": "encode_png"})
        renders = [
            add_generator(repo, gen, model_suffix(gen.card, i), opts, plans, "encode_png")
            for i, (gen, opts) in enumerate(zip(gens, gen_opts))
        ]
        for i, (seg, opts) in enumerate(zip(segs, seg_opts)):
            add_segmenter(repo, seg, model_suffix(seg.card, i), opts, plans)
        if gens and segs:
            problem = photo2photo_problem(gens[0], segs[0])
            if problem:
                notes.append(f"photo2photo not built: {problem}")
            else:
                add_photo2photo(repo, gens[0], segs[0], renders[0], gen_opts[0])
        if depth_pair is not None:
            pair = resolve_depth_pair(*depth_pair, work)
            d_opts, p_opts = (serving_options(s.card, overrides) for s in (pair.depth, pair.photo))
            add_depth_pair(repo, pair, p_opts, d_opts, plans)
            notes.extend(pair.notes)
        layout_opts = [serving_options(c, overrides) for c in layout_cards]
        add_layouts(repo, layout_cards, layout_opts, gens, renders, work, plans, notes)

        repo.write(tmp, configs_only=configs_only)
        if target == "gpu-trt":
            write_engine_script(tmp, repo.engine_builds)
            if repo.missing_plans:
                notes.append(
                    f"no TensorRT engine given for {', '.join(repo.missing_plans)}: build them on the "
                    f"serving GPU before starting Triton: sh <repository>/{ENGINE_SCRIPT}"
                )
        manifest = {
            "format": MANIFEST_FORMAT,
            "target": target,
            "created": now_iso(),
            "command": command_line(),
            "configs_only": configs_only,
            "models": repo.info,
            "ensembles": repo.ensembles,
            "notes": notes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        os.chmod(out, 0o755)
        return BuiltRepository(out, target, repo.info, repo.ensembles, notes)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def load_manifest(repo: Union[str, os.PathLike]) -> dict[str, Any]:
    path = Path(repo) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{repo} is not a cityserve model repository ({MANIFEST} missing)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path} is not valid JSON: {str(e)[:80]}") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return manifest


__all__ = [
    "TARGETS",
    "MANIFEST",
    "DEFAULT_MAX_BATCH_SIZE",
    "ServingOptions",
    "BuiltRepository",
    "GraphSource",
    "Repository",
    "build_repository",
    "check_config_against_onnx",
    "parse_config",
    "serving_options",
    "load_manifest",
    "python_models_dir",
    "CARD_SUFFIX",
]
