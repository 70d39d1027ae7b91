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
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..labels import get_label_set
from . import synthetic_objects as O
from .synthetic_photo import finish
from .synthetic_render import SKY_DEPTH, Camera, Canvas
from .synthetic_street import TERRAIN, Street, make_street, render_background

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


def _place_objects(cv: Canvas, st: Street, rng: np.random.Generator) -> None:
    """Decide what stands in the street, then draw it (near to far, z-buffered)."""
    counters: dict[int, int] = defaultdict(int)

    def inst(label: int) -> int:
        counters[label] += 1
        return label * 1000 + counters[label] - 1

    items: list[tuple[float, int, object]] = []

    cam = cv.cam

    def add(z: float, fn, x: float | None = None, r: float = 3.0, length: float = 1.0) -> None:
        """Queue a drawer for an object spanning [z, z + length] around lateral x (+- r); culls it if
        it lies wholly left or right of the image (the far end is the one nearest the centre)."""
        if x is not None:
            zf = max(z + length, 0.5)
            if cam.cx + cam.f * (x + r) / zf < 0 or cam.cx + cam.f * (x - r) / zf > cam.W:
                return
        items.append((z, len(items), fn))

    road_l, road_r = st.road_x
    p_truck, p_bus = (0.12 if rng.random() < 0.55 else 0.0), (0.12 if rng.random() < 0.45 else 0.0)

    def vehicle_label() -> int:
        r = rng.random()
        return O.TRUCK if r < p_truck else O.BUS if r < p_truck + p_bus else O.CAR

    # Traffic in the lanes.
    density = rng.uniform(0.35, 0.8)
    for x0, x1, direction in st.lanes:
        own = x0 <= 0 <= x1
        z = rng.uniform(7, 18) if own else rng.uniform(2, 14)
        while z < 110:
            if rng.random() < density:
                lab = vehicle_label()
                X = (x0 + x1) / 2 + rng.normal(0, 0.2)
                zz = z
                add(
                    zz,
                    lambda cv, X=X, zz=zz, d=direction, lab=lab, s=int(rng.integers(2**31)): O.draw_vehicle(
                        cv, st, np.random.default_rng(s), X, zz, d, inst(lab), lab
                    ),
                    X,
                    1.5,
                    13,
                )
                z += rng.uniform(12, 16) if lab != O.CAR else rng.uniform(5, 7)
            z += rng.uniform(4, 22)
    # Parked cars along the curbs.
    for sign, edge, lane_edge in ((-1, road_l, st.lanes[0][0]), (1, road_r, st.lanes[-1][1])):
        if abs(edge - lane_edge) < 1.0:
            continue
        X = edge - sign * 1.1
        z = rng.uniform(1, 8)
        while z < 90:
            if rng.random() < 0.75:
                zz, lab = z, (O.CAR if rng.random() < 0.95 else O.TRUCK)
                add(
                    zz,
                    lambda cv, X=X, zz=zz, d=int(rng.choice([-1, 1])), lab=lab, s=int(rng.integers(2**31)): (
                        O.draw_vehicle(cv, st, np.random.default_rng(s), X, zz, d, inst(lab), lab)
                    ),
                    X,
                    1.5,
                    9,
                )
                z += 9.0 if lab == O.TRUCK else 5.0
            z += rng.uniform(0.6, 4.0)
    # Pedestrians on the sidewalks and on the crossing.
    for s in (st.left, st.right):
        walk = [(lab, o) for lab, o in s.bands if lab == 8]
        lo = s.curb + 0.4
        hi = s.facade - 0.4
        for _ in range(int(rng.poisson(rng.uniform(1.5, 6)))):
            X = s.sign * rng.uniform(lo, hi) if walk else s.sign * (s.facade - 0.5)
            Z = 3.5 + 50 * rng.random() ** 1.6
            view = "side" if rng.random() < 0.35 else "front"
            add(
                Z,
                lambda cv, X=X, Z=Z, view=view, sd=int(rng.integers(2**31)): O.draw_person(
                    cv, st, np.random.default_rng(sd), X, Z, inst(O.PERSON), view
                ),
                X,
                0.6,
            )
    if st.crosswalk is not None:
        z0, z1 = st.crosswalk
        for _ in range(int(rng.integers(0, 4))):
            X, Z = rng.uniform(road_l, road_r), rng.uniform(z0 + 0.5, z1 - 0.5)
            add(
                Z,
                lambda cv, X=X, Z=Z, sd=int(rng.integers(2**31)): O.draw_person(
                    cv, st, np.random.default_rng(sd), X, Z, inst(O.PERSON), "side"
                ),
                X,
                0.6,
            )
    # Cyclists and motorcyclists.
    if rng.random() < 0.55:
        for _ in range(int(rng.integers(1, 3))):
            motor = rng.random() < 0.4
            if rng.random() < 0.5:
                view, X, Z = "side", rng.uniform(road_l + 1, road_r - 1), rng.uniform(7, 30)
            else:
                view, X, Z = (
                    "back",
                    road_r - rng.uniform(0.6, 1.2) - (2.2 if road_r - st.lanes[-1][1] > 1 else 0),
                    rng.uniform(6, 30),
                )
            add(
                Z,
                lambda cv, X=X, Z=Z, view=view, motor=motor, sd=int(rng.integers(2**31)): O.draw_two_wheeler(
                    cv,
                    st,
                    np.random.default_rng(sd),
                    X,
                    Z,
                    inst(O.MOTORCYCLE if motor else O.BICYCLE),
                    inst(O.RIDER),
                    motor,
                    view,
                ),
                X,
                1.2,
            )
    # Street furniture and trees along both curbs.
    has_lights = rng.random() < 0.65
    z_cross = st.crosswalk[0] - 1.0 if st.crosswalk else rng.uniform(10, 35)
    for s in (st.left, st.right):
        Xp = s.sign * (s.curb + rng.uniform(0.35, 0.7))
        z = rng.uniform(2, 14)
        while z < 130:
            r = rng.random()
            zz = z
            if r < 0.45:
                add(
                    zz,
                    lambda cv, zz=zz, Xp=Xp, hgt=rng.uniform(6, 9), arm=-s.sign * rng.uniform(0.8, 2.0) * (rng.random() < 0.6): (
                        O.draw_pole(cv, st, Xp, zz, hgt, arm)
                    ),
                    Xp,
                    2.5,
                )
            else:
                add(
                    zz,
                    lambda cv, zz=zz, Xp=Xp, hgt=rng.uniform(2.6, 3.4), sd=int(rng.integers(2**31)): O.draw_sign(
                        cv, st, np.random.default_rng(sd), Xp, zz, hgt
                    ),
                    Xp,
                    0.6,
                )
            z += rng.uniform(10, 28)
        if has_lights:
            state = int(rng.integers(3))
            add(
                z_cross,
                lambda cv, Xp=Xp, state=state, y0=rng.uniform(2.3, 2.8): (
                    O.draw_pole(cv, st, Xp, z_cross, y0 + 0.1),
                    O.draw_traffic_light(cv, st, rng, Xp, z_cross - 0.1, y0, state),
                ),
            )
            if rng.random() < 0.5:  # a mast arm over the road with hanging lights
                arm = -s.sign * rng.uniform(3.5, 6.0)
                zz = z_cross + 0.5

                def mast(cv, Xp=Xp, arm=arm, zz=zz, state=state):
                    O.draw_pole(cv, st, Xp, zz, 6.2)
                    a0, a1 = sorted((Xp, Xp + arm))
                    O._draw_box(
                        cv,
                        st,
                        O.box(a0, a1, 5.95, 6.1, zz - 0.06, zz + 0.06),
                        O.POLE,
                        O.POLE,
                        O.srgb_to_linear((120, 122, 125)),
                        1.0,
                    )
                    for frac in (0.55, 0.95):
                        O.draw_traffic_light(cv, st, rng, Xp + arm * frac, zz - 0.15, 5.0, state)

                add(zz, mast)
        if rng.random() < 0.3:  # guard rail along the curb
            z0 = rng.uniform(3, 30)
            z1 = z0 + rng.uniform(6, 25)
            Xr = s.sign * (s.curb + 0.25)
            add(
                z0,
                lambda cv, Xr=Xr, z0=z0, z1=z1, sd=int(rng.integers(2**31)): O.draw_railing(
                    cv, st, np.random.default_rng(sd), Xr, z0, z1
                ),
                Xr,
                0.1,
                z1 - z0,
            )
        if rng.random() < 0.6:
            verge = [(lab, o) for lab, o in s.bands if lab == TERRAIN]
            Xt = s.sign * (s.curb + 0.8) if not verge or verge[0][1] > s.curb + 3 else s.sign * (verge[0][1] - 0.6)
            z = rng.uniform(3, 14)
            size = rng.uniform(1.2, 2.2)
            while z < 110:
                zz = z
                sz = size * rng.uniform(0.85, 1.15)
                add(
                    zz,
                    lambda cv, zz=zz, Xt=Xt, sz=sz, sd=int(rng.integers(2**31)): O.draw_tree(
                        cv, st, np.random.default_rng(sd), Xt, zz, sz
                    ),
                    Xt,
                    2.5 * sz,
                )
                z += rng.uniform(7, 15)
        if any(lab == TERRAIN for lab, _ in s.bands) and rng.random() < 0.7:
            Xb = s.sign * (s.facade - 0.6)
            z = rng.uniform(2, 10)
            while z < 80:
                zz = z
                w = rng.uniform(0.6, 2.0)
                add(
                    zz,
                    lambda cv, zz=zz, Xb=Xb, w=w, h=rng.uniform(0.5, 1.3), sd=int(rng.integers(2**31)): O.draw_bush(
                        cv, st, np.random.default_rng(sd), Xb, zz, w, h
                    ),
                    Xb,
                    w * 1.3,
                )
                z += rng.uniform(3, 12)

    # The z-buffer makes the result independent of drawing order (each object's own decorations come
    # after its faces); near to far lets objects hidden behind nearer ones be skipped early.
    for _, _, fn in sorted(items, key=lambda t: (t[0], t[1])):
        fn(cv)


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
    _place_objects(cv, st, rng)
    ego = rng.random() < 0.3
    if ego_vehicle if ego_vehicle is not None else ego:
        O.draw_ego_vehicle(cv, st, rng)
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
