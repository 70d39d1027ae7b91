"""Evaluation protocols behind ``cityserve eval``: they tie metrics to models and data.

Scenes come from held-out synthetic seeds or a dataset folder's split (``cityserve.data.scenes``).

* ``evaluate_segmenter``: a segmenter's mIoU / per-class IoU and F1 against the ground truth.
* ``evaluate_generator``: segmentation consistency (a segmenter's mIoU on the generated photos against
  the input labels, next to its mIoU on the real photos of the same scenes; both segmented at the
  segmenter's own size: SPADE's protocol on Cityscapes val), L1 / SSIM to the real photos,
  ``segfeat_frechet`` (the Fréchet distance of the segmenter's encoder features of generated vs real
  photos, an in-domain stand-in for FID), and FID / KID when an Inception weights file is given.
  A depth-aware stage 2 is rendered from stage 1's predicted depth (``depth_model``) or from the
  scenes' true depth (``true_depth``).
* ``evaluate_depth``: a depth-aware stage 1's abs-rel and RMSE of log-depth against the scenes' depth;
  ``evaluate_depth_maps`` adds ``depth_patch_frechet``, a distance between the distributions of
  predicted and true depth maps (the paper's depth-map FID has no Inception weights here).
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

from .data.depth import card_depth
from .data.scenes import SceneSource, SyntheticScenes
from .data.transforms import resize_photo
from .engines import Renderer
from .errors import CityserveError, ConfigError
from .export.depth_export import depth_graph_from_card, photo_graph_from_card
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


DEPTH_PATCH = 8
DEPTH_FRECHET_NOTE = (
    f"Fréchet distance between Gaussians fitted to the {DEPTH_PATCH}x{DEPTH_PATCH} patches (one "
    f"{DEPTH_PATCH * DEPTH_PATCH}-d vector per non-overlapping patch, sky included) of the predicted and of the "
    "true normalised log-depth maps of the same scenes: how far the predicted maps' local structure "
    "(edges, slopes, flat areas) is from the real maps' as a distribution, a stand-in for the paper's "
    "depth-map FID (no Inception weights); 0 for identical maps, lower is better"
)


def depth_patches(norm_depth: np.ndarray, patch: int = DEPTH_PATCH) -> np.ndarray:
    """[H,W] -> [N, patch*patch]: the non-overlapping patches of a map (edges that do not fill a patch dropped)."""
    h, w = (norm_depth.shape[0] // patch) * patch, (norm_depth.shape[1] // patch) * patch
    x = np.asarray(norm_depth, np.float64)[:h, :w].reshape(h // patch, patch, w // patch, patch)
    return x.transpose(0, 2, 1, 3).reshape(-1, patch * patch)


@dataclasses.dataclass
class DepthReport:
    scores: DepthScores
    patch_frechet: float  # see DEPTH_FRECHET_NOTE

    def to_dict(self) -> dict:
        return {
            **self.scores.to_dict(),
            "depth_patch_frechet": self.patch_frechet,
            "depth_patch_frechet_features": {"patch": DEPTH_PATCH, "note": DEPTH_FRECHET_NOTE},
        }


def evaluate_depth_maps(depth_card, source: SceneSource | Sequence[int], progress: bool = True) -> DepthReport:
    """Stage 1's depth (its exported-graph form in torch, in metres) against the true depth of ``source``'s
    scenes, drawn at the card's size: abs-rel and RMSE of log-depth with the pixels at the sky cap left
    out (``DepthAccumulator``), and the patch Fréchet distance of the normalised log-depth maps."""
    if not isinstance(source, SceneSource):
        source = SyntheticScenes(source)
    graph = depth_graph_from_card(depth_card)
    acc = DepthAccumulator(max_depth=graph.norm.far)
    size = (int(depth_card.height), int(depth_card.width))
    f_pred, f_true = [], []
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
        f_pred.append(depth_patches(graph.norm.normalise(pred.astype(np.float64))))
        f_true.append(depth_patches(graph.norm.normalise(scene.depth.astype(np.float64))))
    return DepthReport(acc.scores(), frechet_from_features(np.concatenate(f_pred), np.concatenate(f_true)))


def evaluate_depth(depth_card, source: SceneSource | Sequence[int], progress: bool = True) -> DepthScores:
    """abs-rel and RMSE of log-depth of stage 1 on ``source`` (``evaluate_depth_maps``' scores)."""
    return evaluate_depth_maps(depth_card, source, progress).scores


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
        if "depth_input" in self.source:
            notes.append(f"A depth-aware stage 2, rendered from depth {self.source['depth_input']}.")
        if self.segfeat_frechet is not None:
            notes.append(f"`segfeat_frechet`: {SEGFEAT_NOTE}. Features: {self.segfeat['features']}.")
        return "\n".join(rows) + "\n" + "".join(f"\n{n}\n" for n in notes)


class DepthAwareRenderer:
    """A depth-aware stage 2 in torch, fed stage 1's predicted depth (``depth_card``) or, with ``depth_card``
    None, the depth each scene carries (its true depth): ``render(labels, instances, depth)`` -> [1,H,W,3]."""

    def __init__(self, photo_card, depth_card=None):
        self.photo = photo_graph_from_card(photo_card)
        self.depth = None if depth_card is None else depth_graph_from_card(depth_card)
        self.height, self.width = int(photo_card.height), int(photo_card.width)
        if depth_card is not None and (int(depth_card.height), int(depth_card.width)) != (self.height, self.width):
            raise ConfigError(
                f"--depth-model {depth_card.name}: {depth_card.height}x{depth_card.width}, "
                f"the photo stage renders {self.height}x{self.width}"
            )
        self.description = f"predicted by {depth_card.name}" if depth_card is not None else "true (the scenes' own)"

    def render(self, labels: np.ndarray, instances: np.ndarray, depth: Optional[np.ndarray]) -> np.ndarray:
        lab = torch.from_numpy(labels.astype(np.int64))[None, None]
        inst = torch.from_numpy(instances.astype(np.int32))[None, None]
        with torch.no_grad():
            if self.depth is not None:
                d = self.depth(lab, inst if self.depth.use_instance else None)
            elif depth is None:
                raise ConfigError("the scenes carry no depth: true-depth evaluation needs synthetic seeds")
            else:
                d = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None, None]
            return self.photo(lab, inst if self.photo.use_instance else None, d).numpy()


def _renderer(gen_card, engine: str, depth_model, true_depth: bool):
    """The plain card's ``Renderer``, or a ``DepthAwareRenderer`` for a photo-from-depth stage."""
    if getattr(gen_card, "depth", None) is None:
        if depth_model is not None or true_depth:
            raise ConfigError(
                f"{gen_card.name} is not a photo-from-depth stage: --depth-model / --true-depth do not apply"
            )
        return Renderer.from_card(gen_card, engine=engine)
    stage, _ = card_depth(gen_card)
    if stage != "photo-from-depth":
        raise ConfigError(f"{gen_card.name} is a {stage} stage: evaluate it with `cityserve eval depth`")
    if (depth_model is None) == (not true_depth):
        raise ConfigError(
            f"{gen_card.name} renders from depth: give --depth-model STAGE1_CARD (predicted depth) or --true-depth"
        )
    if engine != "torch":
        raise ConfigError("a depth-aware stage is evaluated with --engine torch")
    return DepthAwareRenderer(gen_card, depth_model)


def evaluate_generator(
    gen_card,
    seg_card,
    source: SceneSource | Sequence[int],
    engine: str = "torch",
    inception: Optional[str] = None,
    batch: int = 4,
    segfeat_pooling: Optional[str] = "positions",
    progress: bool = True,
    depth_model=None,
    true_depth: bool = False,
    zero_latent: bool = False,
) -> GeneratorReport:
    """Render every scene's label map, segment the photo, score it against the labels; beside it, the
    same segmenter on the real photo, L1 / SSIM to the real photo, and ``segfeat_frechet`` (features of
    the generated vs the real photos, from the segmenting passes themselves). Scenes are drawn at (seeds)
    or resized to (folders) the generator's size; ``segfeat_pooling`` None skips the distance. A
    photo-from-depth stage renders from ``depth_model``'s (stage 1's card) depth or, ``true_depth``, from
    the scenes' own depth. ``zero_latent`` renders a generator that takes a latent (OASIS noise, VAE style)
    with z = 0 instead of a latent drawn from each scene's seed, as the depth-aware stages always do."""

    net = None
    if inception is not None:  # a wrong weights file is refused before any scene is rendered
        net = load_fid_inception(inception)
    renderer = _renderer(gen_card, engine, depth_model, true_depth)
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
        if isinstance(renderer, DepthAwareRenderer):
            photo = renderer.render(scene.labels, scene.instances, scene.depth)[0]
        else:
            z = np.zeros((1, renderer.io.z_dim), np.float32) if zero_latent and renderer.io.z_dim else None
            photo = renderer.render(scene.labels, instances=scene.instances, z=z, seed=source.seed_of(i))[0]
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
    described = source.describe()
    if isinstance(renderer, DepthAwareRenderer):
        described["depth_input"] = renderer.description
    elif zero_latent:
        described["latent"] = "z = 0"
    report = GeneratorReport(described, gen_acc.scores(), real_acc.scores(), float(np.mean(l1s)), float(np.mean(ssims)))
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
