"""The static street's random layout: lanes, sidewalks, and on each side a facade line and a back plane.

Each side of the street is two vertical planes parallel to the road: the facade line (buildings with
gaps holding parks, walls, fences or side streets) and a back plane further out (taller buildings or
tree lines seen over and between the front row). ``synthetic_background`` ray-casts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .synthetic_photo import jitter_color, srgb_to_linear, value_noise

# Cityscapes label ids used here.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, VEGETATION, TERRAIN, SKY = 7, 8, 11, 12, 13, 21, 22, 23

# Front-row segment kinds.
K_BUILDING, K_PARK, K_WALL, K_FENCE, K_STREET, K_OPEN = 0, 1, 2, 3, 4, 5
# Back-plane segment kinds.
B_NONE, B_BUILDING, B_TREES = 0, 1, 2

FACADE_COLORS = [  # sRGB plaster / brick / concrete tones
    (196, 182, 160),
    (214, 204, 184),
    (170, 160, 150),
    (150, 150, 152),
    (225, 220, 210),
    (158, 96, 72),
    (140, 84, 66),
    (190, 160, 120),
    (200, 180, 150),
    (120, 118, 120),
    (205, 190, 170),
    (176, 186, 196),
    (210, 170, 150),
    (185, 175, 140),
]
Z_END = 400.0  # the street's buildings end here (beyond: open land up to the horizon)


@dataclass
class Facades:
    """Segments along Z of one plane; per-segment arrays so pixels can gather their style."""

    z0: np.ndarray
    z1: np.ndarray
    kind: np.ndarray
    height: np.ndarray
    color: np.ndarray  # [n,3] linear albedo
    floor_h: np.ndarray
    win_sp: np.ndarray  # window spacing along the facade
    win_w: np.ndarray  # window width as a fraction of the spacing
    win_h: np.ndarray  # window height as a fraction of the floor height
    brick: np.ndarray  # bool: brick courses texture
    shop: np.ndarray  # bool: shop windows on the ground floor
    glass: np.ndarray  # [n,3] linear
    wave: np.ndarray  # [n,3] (amplitude, frequency, phase) of a tree line's top

    def index(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.z1, z, side="right"), 0, len(self.z1) - 1)

    def top(self, i: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Height of the segment i at z (tree lines have a wavy top)."""
        a, fr, ph = self.wave[i, 0], self.wave[i, 1], self.wave[i, 2]
        return self.height[i] + a * (np.sin(z * fr + ph) + 0.5 * np.sin(z * fr * 2.7 + 2 * ph))


@dataclass
class Side:
    sign: int  # -1 left, +1 right
    curb: float  # |X| of the road edge
    bands: list[tuple[int, float]]  # (label, outer |X|) from the curb outwards
    facade: float  # |X| of the facade plane
    back: float  # |X| of the back plane
    front: Facades = None
    rear: Facades = None


@dataclass
class Street:
    """Everything static about a scene: road geometry, both sides, materials and light."""

    lanes: list[tuple[float, float, int]]  # (x_left, x_right, direction +1 away / -1 oncoming)
    left: Side
    right: Side
    markings: list[tuple[float, float, float, float, np.ndarray]]  # (x, width, period, duty, color)
    crosswalk: tuple[float, float] | None  # (z0, z1)
    sun: np.ndarray  # unit vector towards the sun (X, Y-up, Z)
    sun_k: float  # 0 = overcast
    ambient: float
    sun_col: np.ndarray
    amb_col: np.ndarray
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    cloudiness: float
    asphalt: np.ndarray
    paver: np.ndarray
    curb_col: np.ndarray
    grass: np.ndarray
    tile: tuple[float, float]
    tiles: dict = field(default_factory=dict)

    @property
    def road_x(self) -> tuple[float, float]:
        return -self.left.curb, self.right.curb

    def side(self, sign: int) -> Side:
        return self.left if sign < 0 else self.right

    def shadowed(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """True where a point is in the shadow of the front row on the sun's side."""
        X, Y, Z = np.broadcast_arrays(np.asarray(X, float), np.asarray(Y, float), np.asarray(Z, float))
        if self.sun_k <= 0 or abs(self.sun[0]) < 1e-3:
            return np.zeros(X.shape, bool)
        s = self.side(int(np.sign(self.sun[0])))
        xf = s.sign * s.facade
        t = (xf - X) / self.sun[0]  # distance along the sun ray to the facade plane
        zf = Z + t * self.sun[2]
        yf = Y + t * self.sun[1]
        i = s.front.index(zf)
        h = np.where((zf < Z_END) & (s.front.kind[i] != K_OPEN), s.front.height[i], 0.0)
        return (t > 0) & (h > yf)

    def light(self, normal, lit) -> np.ndarray:
        """Irradiance (linear RGB) on a surface with this world normal; lit = 1 outside shadows."""
        ndl = max(float(np.dot(normal, self.sun)), 0.0)
        lit = np.asarray(lit, np.float32)[..., None]
        return self.ambient * self.amb_col + self.sun_k * ndl * self.sun_col * lit


def _facades(rng, z_start: float, z_end: float, base_h: float, front: bool) -> Facades:
    rows = []
    z = z_start
    while z < z_end:
        r = rng.random()
        if front:
            if r < 0.74 or not rows or rows[-1]["kind"] != K_BUILDING:
                kind, length = K_BUILDING, rng.uniform(7, 28)
            else:
                kind = int(rng.choice([K_PARK, K_WALL, K_FENCE, K_STREET], p=[0.35, 0.25, 0.2, 0.2]))
                length = rng.uniform(4, 12) if kind != K_STREET else rng.uniform(9, 16)
        else:
            kind = int(rng.choice([B_NONE, B_BUILDING, B_TREES], p=[0.15, 0.55, 0.3]))
            length = rng.uniform(12, 45)
        if (front and kind == K_BUILDING) or (not front and kind == B_BUILDING):
            height = base_h * rng.uniform(0.6, 1.5) * (1.0 if front else 1.4)
        elif not front and kind == B_TREES:
            height = rng.uniform(6, 13)
        elif kind == K_PARK:
            height = rng.choice([0.0, rng.uniform(0.6, 1.4)])  # optional hedge
        elif kind in (K_WALL, K_FENCE):
            height = rng.uniform(1.0, 2.4)
        else:
            height = 0.0
        col = FACADE_COLORS[rng.integers(len(FACADE_COLORS))]
        brick = col[0] - col[2] > 60 and rng.random() < 0.8
        rows.append(
            dict(
                z0=z,
                z1=z + length,
                kind=kind,
                height=height,
                color=jitter_color(rng, col, 0.1),
                floor_h=rng.uniform(2.9, 3.8),
                win_sp=rng.uniform(1.8, 4.0),
                win_w=rng.uniform(0.3, 0.65),
                win_h=rng.uniform(0.35, 0.6),
                brick=brick,
                shop=rng.random() < 0.5,
                glass=jitter_color(rng, (60, 70, 82), 0.3),
                wave=(rng.uniform(0.5, 2.0), rng.uniform(0.15, 0.5), rng.uniform(0, 6.3))
                if (not front and kind == B_TREES)
                else (0.0, 0.0, 0.0),
            )
        )
        z += length
    rows.append(dict(rows[-1], z0=z, z1=1e9, kind=K_OPEN if front else B_NONE, height=0.0))
    return Facades(**{k: np.array([r[k] for r in rows]) for k in rows[0]})


def make_street(rng: np.random.Generator) -> Street:
    lane_w = rng.uniform(2.9, 3.6)
    n_lanes = int(rng.choice([2, 2, 3, 4]))
    n_oncoming = n_lanes // 2
    parking = [rng.random() < 0.55, rng.random() < 0.55]
    ego_lane = int(rng.integers(n_oncoming, n_lanes))  # drive in a lane going our way
    # Road cross-section, camera at X = 0 in the middle of its lane.
    x = -(ego_lane + 0.5) * lane_w - (2.2 if parking[0] else 0.0)
    road_l = x
    lanes = []
    if parking[0]:
        x += 2.2
    for k in range(n_lanes):
        lanes.append((x, x + lane_w, -1 if k < n_oncoming else 1))
        x += lane_w
    road_r = x + (2.2 if parking[1] else 0.0)
    white = srgb_to_linear((215, 215, 210)) * rng.uniform(0.7, 1.0)
    yellow = srgb_to_linear((220, 180, 60)) * rng.uniform(0.7, 1.0)
    markings = [(lanes[0][0] + 0.15, 0.12, 0.0, 1.0, white), (lanes[-1][1] - 0.15, 0.12, 0.0, 1.0, white)]
    for k in range(1, n_lanes):
        xm = lanes[k][0]
        if k == n_oncoming:
            markings.append((xm, 0.14, 0.0, 1.0, yellow if rng.random() < 0.3 else white))
        else:
            markings.append((xm, 0.12, rng.uniform(8, 12), rng.uniform(0.3, 0.5), white))
    crosswalk = None
    if rng.random() < 0.35:
        z0 = rng.uniform(9, 25)
        crosswalk = (z0, z0 + rng.uniform(3, 5))

    base_h = rng.uniform(9, 22)
    sides = []
    for sign, curb, _park in ((-1, -road_l, parking[0]), (1, road_r, parking[1])):
        r = rng.random()
        if r < 0.2:
            bands = [(TERRAIN, rng.uniform(1.0, 2.5)), (SIDEWALK, rng.uniform(1.8, 3.5))]
        elif r < 0.35:
            bands = [(SIDEWALK, rng.uniform(2.0, 3.5)), (TERRAIN, rng.uniform(1.5, 4.0))]
        else:
            bands = [(SIDEWALK, rng.uniform(2.2, 5.0))]
        outer, acc = [], curb
        for lab, w in bands:
            acc += w
            outer.append((lab, acc))
        s = Side(sign=sign, curb=curb, bands=outer, facade=acc, back=acc + rng.uniform(8, 30))
        s.front = _facades(rng, 0.0, Z_END, base_h, True)
        s.rear = _facades(rng, 0.0, Z_END, base_h, False)
        sides.append(s)

    overcast = rng.random() < 0.35
    el = np.radians(rng.uniform(20, 55))
    az = rng.uniform(-np.pi, np.pi)
    # Keep the sun off the camera axis so one side of the street is lit, the other in shade.
    if abs(np.sin(az)) < 0.4:
        az = np.sign(np.sin(az) or 1.0) * rng.uniform(0.5, 2.6)
    sun = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    tile = (rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8))
    st = Street(
        lanes=lanes,
        left=sides[0],
        right=sides[1],
        markings=markings,
        crosswalk=crosswalk,
        sun=sun,
        sun_k=0.0 if overcast else rng.uniform(1.6, 2.4),
        ambient=rng.uniform(0.8, 1.0) if overcast else rng.uniform(0.35, 0.5),
        sun_col=np.array([1.05, 1.0, 0.88], np.float32) * (1 + 0.05 * rng.uniform(-1, 1, 3)).astype(np.float32),
        amb_col=np.array([0.86, 0.92, 1.06], np.float32),
        sky_top=srgb_to_linear((180, 180, 185) if overcast else (95, 140, 205))
        * rng.uniform(0.85, 1.15, 3).astype(np.float32),
        sky_horizon=srgb_to_linear((215, 215, 215) if overcast else (200, 212, 225)) * rng.uniform(0.92, 1.05),
        cloudiness=rng.uniform(0.0, 0.8) if not overcast else 0.2,
        asphalt=jitter_color(rng, (88, 88, 92), 0.15) * np.float32(rng.uniform(0.8, 1.15)),
        paver=jitter_color(
            rng, [(160, 156, 150), (150, 140, 135), (175, 165, 150), (140, 130, 130)][rng.integers(4)], 0.08
        ),
        curb_col=jitter_color(rng, (175, 175, 170), 0.05),
        grass=jitter_color(rng, (95, 120, 55), 0.15),
        tile=tile,
    )
    st.tiles = {
        "fine": value_noise(rng, 128, 128, 2.0, 2),
        "mid": value_noise(rng, 128, 128, 9.0, 3),
        "coarse": value_noise(rng, 128, 128, 32.0, 2),
    }
    return st
