"""Evaluation protocols behind ``cityserve eval``: they tie metrics to models and data.

* ``evaluate_segmenter``: a segmenter's mIoU / per-class IoU and F1 on held-out synthetic seeds.
* ``evaluate_generator``: segmentation consistency, the seeds' protocol (a segmenter's mIoU on the
  generated photos against the input labels, next to its mIoU on the real photos of the same scenes;
  both segmented at the segmenter's own size), plus L1 / SSIM to the real photos, and FID / KID when an
  Inception weights file is given.
* ``folder_fid``: FID / KID between two image folders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from .metrics import SegmentationScores, cityscapes_scores, fid_from_features, kid_from_features, l1, ssim

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def segmenter_fn(card, batch: int = 4, native_size: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 RGB [B,H,W,3] -> uint8 label ids [B,H,W], through the card's SegmentGraph in torch.

    ``native_size``: photos of another size are area-resized to the segmenter's own (card) size, segmented
    there, and the ids nearest-resized back, as the photo2photo chain does; a segmenter trained at 128x256
    sees objects at the scale it learned even on 256x512 photos.
    """
    from .data.transforms import resize_photo
    from .models.segment import segment_graph_from_card
    from .serving.codec import resize_nearest

    graph = segment_graph_from_card(card)
    own = (card.height, card.width)

    def run(images: np.ndarray) -> np.ndarray:
        h, w = images.shape[1:3]
        resize = native_size and (h, w) != own
        if resize:
            images = np.stack([resize_photo(im, *own) for im in images])
        outs = []
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                outs.append(graph(torch.from_numpy(np.ascontiguousarray(images[i : i + batch]))).numpy()[:, 0])
        ids = np.concatenate(outs)
        if resize:
            ids = resize_nearest(ids, h, w)
        return ids

    return run


def _scenes(seeds: Sequence[int], height: int, width: int, desc: str):
    from .data.synthetic import generate_scene

    for seed in tqdm(seeds, desc=desc, unit="scene", leave=False):
        yield seed, generate_scene(seed, height, width)


def evaluate_segmenter(seg_card, seeds: Sequence[int], size: Optional[tuple[int, int]] = None) -> SegmentationScores:
    seg = segmenter_fn(seg_card)
    h, w = size or (seg_card.height, seg_card.width)
    preds, gts = [], []
    for _, scene in _scenes(seeds, h, w, "segmenting"):
        preds.append(seg(scene.photo[None])[0])
        gts.append(scene.labels)
    return cityscapes_scores(preds, gts)


@dataclasses.dataclass
class GeneratorReport:
    seeds: list[int]
    consistency_generated: SegmentationScores  # segmenter on generated photos vs input labels
    consistency_real: SegmentationScores  # segmenter on the real photos vs the same labels
    l1: float
    ssim: float
    fid: Optional[float] = None
    kid: Optional[tuple[float, float]] = None

    def to_dict(self) -> dict:
        d = {
            "seeds": f"{min(self.seeds)}-{max(self.seeds)}"
            if self.seeds == list(range(min(self.seeds), max(self.seeds) + 1))
            else self.seeds,
            "n_images": len(self.seeds),
            "segmentation_consistency": {
                "miou_generated": self.consistency_generated.miou,
                "miou_real": self.consistency_real.miou,
                "generated": self.consistency_generated.to_dict(),
                "real": self.consistency_real.to_dict(),
            },
            "l1": self.l1,
            "ssim": self.ssim,
        }
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
        if self.fid is not None:
            rows.append(f"| FID | {self.fid:.2f} | 0 |")
        if self.kid is not None:
            rows.append(f"| KID | {self.kid[0]:.4f} ± {self.kid[1]:.4f} | 0 |")
        return "\n".join(rows) + "\n"


def evaluate_generator(
    gen_card, seg_card, seeds: Sequence[int], engine: str = "torch", inception: Optional[str] = None, batch: int = 4
) -> GeneratorReport:
    from .engines import Renderer

    net = None
    if inception is not None:  # a wrong weights file is refused before any scene is rendered
        from .models.inception import load_fid_inception

        net = load_fid_inception(inception)
    renderer = Renderer.from_card(gen_card, engine=engine)
    seg = segmenter_fn(seg_card, native_size=True)
    gen_preds, real_preds, gts, l1s, ssims, fakes, reals = [], [], [], [], [], [], []
    for seed, scene in _scenes(seeds, renderer.height, renderer.width, "rendering"):
        photo = renderer.render(scene.labels, instances=scene.instances, seed=seed)[0]
        gen_preds.append(seg(photo[None])[0])
        real_preds.append(seg(scene.photo[None])[0])
        gts.append(scene.labels)
        l1s.append(l1(photo, scene.photo))
        ssims.append(ssim(photo, scene.photo))
        if inception is not None:
            fakes.append(photo)
            reals.append(scene.photo)
    report = GeneratorReport(
        list(seeds),
        cityscapes_scores(gen_preds, gts),
        cityscapes_scores(real_preds, gts),
        float(np.mean(l1s)),
        float(np.mean(ssims)),
    )
    if net is not None:
        f_fake, f_real = inception_features(net, fakes), inception_features(net, reals)
        report.fid = fid_from_features(f_fake, f_real)
        report.kid = kid_from_features(f_fake, f_real)
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

    from .errors import CityserveError

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
    from .models.inception import load_fid_inception

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
