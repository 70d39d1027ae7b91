"""Evaluation protocols behind ``cityserve eval``: they tie metrics to models and data.

Scenes come from held-out synthetic seeds or a dataset folder's split (``cityserve.data.scenes``).

* ``evaluate_segmenter``: a segmenter's mIoU / per-class IoU and F1 against the ground truth.
* ``evaluate_generator``: segmentation consistency (a segmenter's mIoU on the generated photos against
  the input labels, next to its mIoU on the real photos of the same scenes; both segmented at the
  segmenter's own size: SPADE's protocol on Cityscapes val), L1 / SSIM to the real photos,
  ``segfeat_frechet`` (the Fréchet distance of the segmenter's encoder features of generated vs real
  photos, an in-domain stand-in for FID), and FID / KID when an Inception weights file is given.
* ``evaluate_depth``: a depth-aware stage 1's abs-rel and RMSE of log-depth against the scenes' depth.
* ``folder_fid``: FID / KID between two image folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from .data.scenes import SceneSource, SyntheticScenes
from .data.transforms import resize_photo
from .engines import Renderer
from .errors import CityserveError, ConfigError
from .export.depth_export import depth_graph_from_card
from .labels import get_label_set
from .labels.labelmap import resize_nearest
from .metrics import (
    DepthAccumulator,
    DepthScores,
    LabelScores,
    SegmentationScores,
    fid_from_features,
    frechet_from_features,
    kid_from_features,
    l1,
    ssim,
)
from .models.encoder_features import capture_encoder, encoder_module, feature_vectors
from .models.inception import load_fid_inception
from .models.registry import config_from_card
from .models.segment import segment_graph_from_card

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class Segmenter:
    """uint8 RGB [B,H,W,3] -> uint8 label ids [B,H,W] through the card's SegmentGraph in torch.

    ``native_size``: photos of another size are area-resized to the segmenter's own (card) size, segmented
    there, and the ids nearest-resized back, as the photo2photo chain does; a segmenter trained at 128x256
    sees objects at the scale it learned even on 256x512 photos. ``features`` also keeps, from the same
    forward pass, the encoder features of every photo (``cityserve.models.encoder_features``).
    """

    def __init__(self, card, batch: int = 4, native_size: bool = False, features: Optional[str] = None):

        self.card = card
        self.graph = segment_graph_from_card(card)
        self.own = (int(card.height), int(card.width))
        self.batch, self.native_size, self.pooling = batch, native_size, features
        self.label_set = get_label_set(card.label_set or config_from_card(card).label_set)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.segment(images)[0]

    def segment(self, images: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(ids [B,H,W], feature vectors [N,C] or None)."""

        h, w = images.shape[1:3]
        resize = self.native_size and (h, w) != self.own
        if resize:
            images = np.stack([resize_photo(im, *self.own) for im in images])
        outs, feats = [], None
        with contextlib.ExitStack() as stack, torch.inference_mode():
            maps = stack.enter_context(capture_encoder(self.graph.net)) if self.pooling else None
            for i in range(0, len(images), self.batch):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch]))
                outs.append(self.graph(x).numpy()[:, 0])
        if maps is not None:
            feats = np.concatenate([feature_vectors(m, self.pooling) for m in maps])
        ids = np.concatenate(outs)
        if resize:
            ids = resize_nearest(ids, h, w)
        return ids, feats

    def feature_description(self) -> str:

        return encoder_module(self.graph.net)[2]


def segmenter_fn(card, batch: int = 4, native_size: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 RGB [B,H,W,3] -> uint8 label ids [B,H,W] (see ``Segmenter``)."""
    return Segmenter(card, batch, native_size)


def synthetic_source(seeds: Sequence[int]) -> SyntheticScenes:
    return SyntheticScenes(seeds)


def _check_label_sets(seg: Segmenter, source: SceneSource) -> None:
    if seg.label_set.name != source.label_set.name:
        raise ConfigError(
            f"segmenter {seg.card.name} predicts {seg.label_set.name!r} labels but the ground truth is "
            f"{source.label_set.name!r}: evaluate it on data of its own label set"
        )


def evaluate_segmenter(
    seg_card,
    source: SceneSource | Sequence[int],
    size: Optional[tuple[int, int]] = None,
    progress: bool = True,
) -> SegmentationScores:
    """mIoU / per-class IoU and F1 of a segmenter on ``source`` (seeds: scenes drawn at the card's size,
    or ``size``). Folder photos are segmented at the card's size and scored at the file's resolution,
    against the file's ground truth."""
    if not isinstance(source, SceneSource):
        source = SyntheticScenes(source)
    if isinstance(source, SyntheticScenes):  # scenes drawn at the segmenter's own size
        size = size or (int(seg_card.height), int(seg_card.width))
    seg = Segmenter(seg_card, native_size=True)
    _check_label_sets(seg, source)
    acc = LabelScores(source.label_set)
    for scene in tqdm(
        source.scenes(size), total=len(source), desc="segmenting", unit="image", leave=False, disable=not progress
    ):
        acc.update(seg(scene.photo[None])[0], scene.labels)
    return acc.scores()


def evaluate_depth(depth_card, source: SceneSource | Sequence[int], progress: bool = True) -> DepthScores:
    """Stage 1's depth (its exported-graph form in torch, in metres) against the true depth of ``source``'s
    scenes, drawn at the card's size; pixels at the sky cap are left out (``DepthAccumulator``)."""
    if not isinstance(source, SceneSource):
        source = SyntheticScenes(source)
    graph = depth_graph_from_card(depth_card)
    acc = DepthAccumulator(max_depth=graph.norm.far)
    size = (int(depth_card.height), int(depth_card.width))
    for scene in tqdm(
        source.scenes(size), total=len(source), desc="depth", unit="image", leave=False, disable=not progress
    ):
        if scene.depth is None:
            raise ConfigError(f"{scene.name}: the scenes carry no depth to score against (use synthetic seeds)")
        labels = torch.from_numpy(scene.labels.astype(np.int64))[None, None]
        inst = torch.from_numpy(scene.instances.astype(np.int32))[None, None]
        with torch.no_grad():
            pred = graph(labels, inst if graph.use_instance else None)[0, 0].numpy()
        acc.update(pred, scene.depth)
    return acc.scores()


SEGFEAT_NOTE = (
    "Fréchet distance of the segmenter's encoder features, generated vs real photos of the same "
    "scenes: an in-domain stand-in for FID (not FID; not comparable with published FIDs); lower is better"
)


@dataclasses.dataclass
class GeneratorReport:
    source: dict
    consistency_generated: SegmentationScores  # segmenter on generated photos vs input labels
    consistency_real: SegmentationScores  # segmenter on the real photos vs the same labels
    l1: float
    ssim: float
    segfeat_frechet: Optional[float] = None
    segfeat: Optional[dict] = None  # how segfeat_frechet was computed
    fid: Optional[float] = None
    kid: Optional[tuple[float, float]] = None

    def to_dict(self) -> dict:
        d = {
            **self.source,
            "segmentation_consistency": {
                "miou_generated": self.consistency_generated.miou,
                "miou_real": self.consistency_real.miou,
                "generated": self.consistency_generated.to_dict(),
                "real": self.consistency_real.to_dict(),
            },
            "l1": self.l1,
            "ssim": self.ssim,
        }
        if self.segfeat_frechet is not None:
            d["segfeat_frechet"] = self.segfeat_frechet
            d["segfeat_frechet_features"] = self.segfeat
        if self.fid is not None:
            d["fid"] = self.fid
        if self.kid is not None:
            d["kid"] = {"mean": self.kid[0], "std": self.kid[1]}
        return d

    def markdown(self) -> str:
        rows = [
            "| metric | generated | real photos |",
            "| --- | ---: | ---: |",
            f"| segmentation consistency (mIoU) | {self.consistency_generated.miou:.3f} | {self.consistency_real.miou:.3f} |",
            f"| L1 to real (0-1) | {self.l1:.4f} | 0 |",
            f"| SSIM to real | {self.ssim:.4f} | 1 |",
        ]
        if self.segfeat_frechet is not None:
            rows.append(
                f"| segmenter-feature Fréchet distance (`segfeat_frechet`, not FID) | {self.segfeat_frechet:.3f} | 0 |"
            )
        if self.fid is not None:
            rows.append(f"| FID | {self.fid:.2f} | 0 |")
        if self.kid is not None:
            rows.append(f"| KID | {self.kid[0]:.4f} ± {self.kid[1]:.4f} | 0 |")
        notes = []
        if self.segfeat_frechet is not None:
            notes.append(f"`segfeat_frechet`: {SEGFEAT_NOTE}. Features: {self.segfeat['features']}.")
        return "\n".join(rows) + "\n" + "".join(f"\n{n}\n" for n in notes)


def evaluate_generator(
    gen_card,
    seg_card,
    source: SceneSource | Sequence[int],
    engine: str = "torch",
    inception: Optional[str] = None,
    batch: int = 4,
    segfeat_pooling: Optional[str] = "positions",
    progress: bool = True,
) -> GeneratorReport:
    """Render every scene's label map, segment the photo, score it against the labels; beside it, the
    same segmenter on the real photo, L1 / SSIM to the real photo, and ``segfeat_frechet`` (features of
    the generated vs the real photos, from the segmenting passes themselves). Scenes are drawn at (seeds)
    or resized to (folders) the generator's size; ``segfeat_pooling`` None skips the distance."""

    net = None
    if inception is not None:  # a wrong weights file is refused before any scene is rendered
        net = load_fid_inception(inception)
    renderer = Renderer.from_card(gen_card, engine=engine)
    if not isinstance(source, SceneSource):
        source = SyntheticScenes(source)
    seg = Segmenter(seg_card, native_size=True, features=segfeat_pooling)
    _check_label_sets(seg, source)
    gen_acc, real_acc = LabelScores(source.label_set), LabelScores(source.label_set)
    l1s, ssims, fakes, reals, f_gen, f_real = [], [], [], [], [], []
    size = (renderer.height, renderer.width)
    scenes = tqdm(
        source.scenes(size), total=len(source), desc="rendering", unit="scene", leave=False, disable=not progress
    )
    for i, scene in enumerate(scenes):
        photo = renderer.render(scene.labels, instances=scene.instances, seed=source.seed_of(i))[0]
        ids, feats = seg.segment(np.stack([photo, scene.photo]))
        gen_acc.update(ids[0], scene.labels)
        real_acc.update(ids[1], scene.labels)
        if feats is not None:
            half = len(feats) // 2
            f_gen.append(feats[:half])
            f_real.append(feats[half:])
        l1s.append(l1(photo, scene.photo))
        ssims.append(ssim(photo, scene.photo))
        if inception is not None:
            fakes.append(photo)
            reals.append(scene.photo)
    report = GeneratorReport(
        source.describe(), gen_acc.scores(), real_acc.scores(), float(np.mean(l1s)), float(np.mean(ssims))
    )
    if f_gen:
        fg, fr = np.concatenate(f_gen), np.concatenate(f_real)
        report.segfeat_frechet = frechet_from_features(fg, fr)
        report.segfeat = {
            "features": seg.feature_description(),
            "pooling": "one vector per spatial position" if segfeat_pooling == "positions" else "global average",
            "segmenter_input": f"{seg.own[0]}x{seg.own[1]}",
            "n_vectors": int(len(fg)),
            "dims": int(fg.shape[1]),
            "note": SEGFEAT_NOTE,
        }
    if net is not None:
        f_fake, f_real_inc = inception_features(net, fakes), inception_features(net, reals)
        report.fid = fid_from_features(f_fake, f_real_inc)
        report.kid = kid_from_features(f_fake, f_real_inc)
    return report


def inception_features(net: torch.nn.Module, images: Iterable[np.ndarray], batch: int = 8) -> np.ndarray:
    """2048-d pool3 features of uint8 RGB images (any size; resized to 299 inside the network)."""
    feats, buf = [], []

    def flush():
        x = torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            feats.append(net(x).double().numpy())
        buf.clear()

    for img in images:
        buf.append(np.ascontiguousarray(img))
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return np.concatenate(feats)


def read_folder(folder: str | Path) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise CityserveError(f"{folder} holds {len(paths)} images; FID/KID need at least 2")
    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise CityserveError(f"cannot read image {p}")
        out.append(img[:, :, ::-1])
    return out


def folder_fid(a: str | Path, b: str | Path, inception: Optional[str], seed: Optional[int] = None) -> dict:

    net = load_fid_inception(inception, seed=seed)
    fa = inception_features(net, tqdm(read_folder(a), desc="features A", leave=False))
    fb = inception_features(net, tqdm(read_folder(b), desc="features B", leave=False))
    kid = kid_from_features(fa, fb)
    return {
        "fid": fid_from_features(fa, fb),
        "kid": {"mean": kid[0], "std": kid[1]},
        "n_a": len(fa),
        "n_b": len(fb),
        "inception": str(inception) if inception else "random (test only)",
    }
