"""Synthetic street scenes: Cityscapes label ids, instance ids, a rendered photo and exact depth.

A procedural generator, deterministic by seed and drawn directly at any resolution. It feeds the
tests, the demo model, the benchmarks and depth-aware work, so it is pure numpy + OpenCV and fast
(a 256x512 scene in roughly 0.1-0.2 s of one core).

The scene is a street seen from a pinhole camera ~1.5 m above the road, looking along it:

* a road in perspective with lanes, lane markings, crossings, curbs and sidewalks, grass verges;
* building facades on both sides with window grids and shop fronts, gaps holding parks, walls,
  fences or side streets, and a second row of buildings / tree lines behind;
* sky with clouds; cars, trucks and buses (parked and in the lanes), pedestrians, cyclists and
  motorcyclists (rider + vehicle as separate instances), street lamps, poles with traffic signs,
  traffic lights (on posts and on mast arms over the road), street trees and bushes, and sometimes the
  bonnet of the recording car (Cityscapes "ego vehicle").

The photo is not a color lookup of the labels: per-scene materials and per-instance colors, procedural
textures (asphalt grain, window grids, paving joints, leaves), lane markings painted on pixels that are
still "road", sun and shade with cast shadows (or overcast light), aerial haze from the depth map,
vignetting, blur and sensor noise. The depth map is the camera-frame Z distance (metres along the optical
axis) of the drawn geometry; sky pixels hold ``SKY_DEPTH`` (1000 m), and nothing else reaches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..labels import get_label_set
from . import synthetic_objects as O
from . import synthetic_road_users as R
from .synthetic_background import render_background
from .synthetic_photo import finish
from .synthetic_placement import place_objects
from .synthetic_render import SKY_DEPTH, Camera, Canvas
from .synthetic_street import make_street

__all__ = ["Scene", "generate_scene", "write_scene", "CLASSES_PRESENT", "SKY_DEPTH", "scene_stem"]

#: Cityscapes label ids the generator draws (not every scene has all of them).
CLASSES_PRESENT: tuple[int, ...] = (
    1,  # ego vehicle
    7,  # road
    8,  # sidewalk
    11,  # building
    12,  # wall
    13,  # fence
    17,  # pole
    19,  # traffic light
    20,  # traffic sign
    21,  # vegetation
    22,  # terrain
    23,  # sky
    24,  # person
    25,  # rider
    26,  # car
    27,  # truck
    28,  # bus
    32,  # motorcycle
    33,  # bicycle
)
#: Classes in every scene.
CLASSES_ALWAYS: tuple[int, ...] = (7, 11, 23)
INSTANCE_CLASSES: tuple[int, ...] = (24, 25, 26, 27, 28, 29, 30, 31, 32, 33)


@dataclass
class Scene:
    """One generated scene. ``instances`` follow Cityscapes: id*1000+k for instance classes, else the id."""

    labels: np.ndarray  # uint8 [H, W] Cityscapes label ids
    instances: np.ndarray  # int32 [H, W]
    photo: np.ndarray  # uint8 [H, W, 3] RGB
    depth: np.ndarray  # float32 [H, W] metres (camera Z); sky = SKY_DEPTH
    seed: int = 0
    camera: Camera | None = None  # pinhole intrinsics (f, cx, cy in pixels) and height above the road (m)

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape


def _camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    f = width * rng.uniform(0.8, 1.05)
    return Camera(
        f=f,
        cx=width * (0.5 + rng.uniform(-0.06, 0.06)),
        cy=height * rng.uniform(0.4, 0.5),
        height=rng.uniform(1.35, 1.65),
        H=height,
        W=width,
    )


def _compact_instances(inst: np.ndarray) -> None:
    """Renumber each class's visible instances 0..n-1 (in drawing order: nearest first), in place, so
    objects wholly hidden behind others leave no gaps."""
    ids = np.unique(inst[inst >= 1000])
    if len(ids) == 0:
        return
    cls = ids // 1000
    first = np.searchsorted(cls, cls, side="left")  # index of each class's first id
    new = cls * 1000 + (np.arange(len(ids)) - first)
    if np.array_equal(new, ids):
        return
    lut_idx = np.searchsorted(ids, inst)
    things = inst >= 1000
    inst[things] = new[lut_idx[things]]


def generate_scene(seed: int, height: int = 256, width: int = 512, ego_vehicle: bool | None = None) -> Scene:
    """The scene of this seed at this resolution; the same (seed, size) always gives the same arrays.

    ``ego_vehicle``: force the recording car's bonnet on/off (default: the seed decides, ~30 %).
    """
    if int(height) < 8 or int(width) < 8:
        raise ConfigError(f"synthetic scene size must be at least 8x8, got {height}x{width}")
    height, width = int(height), int(width)
    rng = np.random.default_rng(int(seed))
    cam = _camera(rng, height, width)
    st = make_street(rng)
    cv = Canvas(cam)
    render_background(cv, st)
    place_objects(cv, st, rng)
    ego = rng.random() < 0.3
    if ego_vehicle if ego_vehicle is not None else ego:
        R.draw_ego_vehicle(cv, st, rng)
    _compact_instances(cv.instances)
    # Pixel-level noise gets its own stream: its consumption depends on the resolution, and the
    # layout above must not (a seed is the same street at every size).
    noise_rng = np.random.default_rng([int(seed), 1])
    O.apply_materials(cv, noise_rng)
    sky = cv.labels == 23
    ground_sky = cv.photo[~sky].mean() if (~sky).any() else 0.2
    exposure = float(np.clip(noise_rng.uniform(0.2, 0.28) / max(float(ground_sky), 1e-3), 0.4, 2.5))
    photo = finish(noise_rng, cv.photo, cv.depth, sky, st.sky_horizon * 1.05, noise_rng.uniform(250, 900), exposure)
    return Scene(labels=cv.labels, instances=cv.instances, photo=photo, depth=cv.depth, seed=int(seed), camera=cam)


def scene_stem(seed: int) -> str:
    """Cityscapes-style file stem of a seed: ``synthetic_000042_000019``."""
    return f"synthetic_{int(seed):06d}_000019"


def _colors(ids: np.ndarray) -> np.ndarray:
    return get_label_set("cityscapes").ids_to_colors(ids)


def write_scene(
    scene: Scene,
    out_dir: str | os.PathLike,
    stem: str,
    layout: str = "flat",
    split: str = "train",
    city: str = "synthetic",
) -> dict[str, Path]:
    """Write a scene as Cityscapes files and return their paths by kind.

    Files: ``{stem}_leftImg8bit.png`` (RGB photo), ``{stem}_gtFine_labelIds.png`` (uint8 ids),
    ``{stem}_gtFine_instanceIds.png`` (uint16), ``{stem}_gtFine_color.png`` (palette colors) and
    ``{stem}_depth.npy`` (float32 metres). ``layout="flat"`` puts them all in ``out_dir``;
    ``layout="cityscapes"`` uses the dataset tree ``leftImg8bit/{split}/{city}/`` and
    ``gtFine/{split}/{city}/`` (depth beside the photo), which ``CityscapesDataset`` reads.
    """
    out = Path(out_dir)
    if layout == "flat":
        img_dir = gt_dir = out
    elif layout == "cityscapes":
        img_dir, gt_dir = out / "leftImg8bit" / split / city, out / "gtFine" / split / city
    else:
        raise ConfigError(f"unknown layout {layout!r}; choose flat or cityscapes")
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "photo": img_dir / f"{stem}_leftImg8bit.png",
        "labels": gt_dir / f"{stem}_gtFine_labelIds.png",
        "instances": gt_dir / f"{stem}_gtFine_instanceIds.png",
        "color": gt_dir / f"{stem}_gtFine_color.png",
        "depth": img_dir / f"{stem}_depth.npy",
    }
    writes = [
        (paths["photo"], cv2.cvtColor(scene.photo, cv2.COLOR_RGB2BGR)),
        (paths["labels"], scene.labels.astype(np.uint8)),
        (paths["instances"], scene.instances.astype(np.uint16)),
        (paths["color"], cv2.cvtColor(_colors(scene.labels), cv2.COLOR_RGB2BGR)),
    ]
    for path, arr in writes:
        if not cv2.imwrite(str(path), arr):
            raise ConfigError(f"could not write {path}")
    np.save(paths["depth"], scene.depth.astype(np.float32))
    return paths
