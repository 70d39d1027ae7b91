"""The static street: its random layout and the ray-cast background (ground, facades, sky).

Each side of the street is two vertical planes parallel to the road: the facade line (buildings with
gaps holding parks, walls, fences or side streets) and a back plane further out (taller buildings or
tree lines seen over and between the front row). Ray casting them per pixel is exact and cheap: the
facade hit distance depends on the column only, so each side costs a few [H, W] array operations, and
every surface pixel knows its world coordinates, which drive the window grids, paving joints, lane
markings and cast shadows of the photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .synthetic_photo import jitter_color, srgb_to_linear, tile_lookup, value_noise
from .synthetic_render import SKY_DEPTH, Canvas

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


def _fade(footprint: np.ndarray, period) -> np.ndarray:
    """Contrast of a periodic pattern of this period at this pixel footprint (anti-aliasing)."""
    return np.clip(1.6 - 2.2 * footprint / period, 0.0, 1.0)


def _hash(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    v = np.sin(a * 12.9898 + b * 78.233 + c * 37.719) * 43758.5453
    return v - np.floor(v)


def _facade_albedo(st: Street, F: Facades, i, s, y, foot_s, foot_y) -> np.ndarray:
    """Albedo of building facade pixels: plaster/brick, a window grid, shop windows, a cornice."""
    fine = tile_lookup(st.tiles["fine"], y * 40, s * 40)
    mid = tile_lookup(st.tiles["mid"], y * 6, s * 6)
    base = F.color[i] * (1 + 0.05 * fine + 0.07 * mid)[:, None]
    brick = F.brick[i]
    course = (np.mod(y, 0.3) < 0.05) & brick & (foot_y < 0.15)
    base = base * np.where(course, 0.85, 1.0)[:, None]
    fh, sp = F.floor_h[i], F.win_sp[i]
    fy, fs = y / fh, s / sp
    ry, rs = fy - np.floor(fy), fs - np.floor(fs)
    top = F.top(i, s)
    upper = (y > fh) & (y < top - 0.9)
    half_w = F.win_w[i] / 2
    win = (np.abs(rs - 0.5) < half_w) & (ry > 0.3) & (ry < 0.3 + F.win_h[i]) & upper
    # Shop windows and doors on the ground floor.
    ms = np.mod(s, sp * 2)
    shop = F.shop[i] & (y > 0.35) & (y < fh * 0.8) & (ms > sp * 0.25) & (ms < sp * 1.8)
    sill = (np.abs(ry - 0.28) < 0.025) & (np.abs(rs - 0.5) < half_w + 0.04) & upper & (foot_y < 0.05)
    base[sill] *= 1.15
    out = base
    w = np.nonzero(win | shop)[0]
    if len(w):
        iw = i[w]
        h = _hash(np.floor(fy[w]), np.floor(fs[w]), iw.astype(np.float64))
        refl = np.where(
            shop[w], 0.7 + 0.5 * h, 0.5 + 0.6 * np.clip(y[w] / np.maximum(top[w], 1), 0, 1) + 0.6 * h * (h > 0.75)
        )
        glass = F.glass[iw] * refl[:, None]
        k = np.minimum(_fade(foot_s[w], sp[w] * F.win_w[iw]), _fade(foot_y[w], fh[w] * F.win_h[iw]))
        k = np.where(shop[w], 1.0, k)[:, None]
        out[w] = base[w] * (1 - k) + glass * k
    cornice = (y > top - 0.6) & (y < top - 0.35)
    return out * np.where(cornice, 0.75, 1.0)[:, None]


def _trees_albedo(st: Street, z, y, foot) -> np.ndarray:
    n = tile_lookup(st.tiles["mid"], y * 2.5, z * 2.5) + 0.6 * tile_lookup(st.tiles["fine"], y * 7, z * 7) * _fade(
        foot, 0.3
    )
    g = srgb_to_linear((70, 95, 40))
    return g[None, :] * np.clip(1 + 0.45 * n, 0.3, 2)[:, None] * np.array([1.0, 1.0, 0.8], np.float32)


def render_background(cv: Canvas, st: Street) -> None:
    """Ray-cast sky, ground and both sides of the street into the canvas buffers."""
    cam = cv.cam
    H, W, h = cam.H, cam.W, cam.height
    dx, dy = cam.rays()
    DY = np.broadcast_to(dy[:, None], (H, W))
    DX = np.broadcast_to(dx[None, :], (H, W))
    with np.errstate(divide="ignore"):
        t = np.where(DY > 1e-9, h / np.maximum(DY, 1e-12), np.inf)
    surf = np.where(np.isfinite(t), 1, 0).astype(np.int8)  # 0 sky, 1 ground, 2 front, 3 side wall, 4 back
    label = np.where(surf == 1, ROAD, SKY).astype(np.uint8)
    seg = np.zeros((H, W), np.int64)
    sidemap = np.zeros((H, W), np.int8)
    for s in (st.left, st.right):
        cols = np.nonzero(s.sign * dx > 1e-6)[0]
        if len(cols) == 0:
            continue
        ax = s.sign * dx[cols]
        F, B = s.front, s.rear
        tf = s.facade / ax
        i = F.index(tf)
        kf = F.kind[i]
        yf = h - tf[None, :] * dy[:, None]
        hf = np.where(kf == K_OPEN, -1.0, F.height[i])
        front = (yf >= 0) & (yf <= hf[None, :])
        passing = ~front & (yf > 0)
        # The near side wall of the next building, seen through a gap.
        nxt = np.minimum(i + 1, len(F.z0) - 1)
        zs = F.z0[nxt]
        yw = h - zs[None, :] * dy[:, None]
        wall = (
            passing
            & ((kf != K_BUILDING) & (F.kind[nxt] == K_BUILDING) & (zs * ax <= s.back))[None, :]
            & (yw >= 0)
            & (yw <= F.height[nxt][None, :])
        )
        tb = s.back / ax
        j = B.index(tb)
        yb = h - tb[None, :] * dy[:, None]
        bt = np.where(B.kind[j] == B_NONE, -1.0, B.top(j, tb))
        back = passing & ~wall & (yb >= 0) & (yb <= bt[None, :])
        tc = np.where(front, tf[None, :], np.where(wall, zs[None, :], np.where(back, tb[None, :], np.inf)))
        sub_t = t[:, cols]
        win = tc < sub_t
        if not win.any():
            continue
        sc = np.select([front, wall, back], [2, 3, 4], 0).astype(np.int8)
        segc = np.select(
            [front, wall, back],
            [np.broadcast_to(i, front.shape), np.broadcast_to(nxt, front.shape), np.broadcast_to(j, front.shape)],
            0,
        )
        lab_front = np.array([BUILDING, VEGETATION, WALL, FENCE, ROAD, SKY], np.uint8)[kf]
        lab_back = np.array([SKY, BUILDING, VEGETATION], np.uint8)[B.kind[j]]
        labc = np.select(
            [front, wall, back],
            [
                np.broadcast_to(lab_front, front.shape).astype(np.int64),
                BUILDING,
                np.broadcast_to(lab_back, front.shape).astype(np.int64),
            ],
            SKY,
        ).astype(np.uint8)
        rows, cc = np.nonzero(win)
        gcol = cols[cc]
        t[rows, gcol] = tc[rows, cc]
        surf[rows, gcol] = sc[rows, cc]
        seg[rows, gcol] = segc[rows, cc]
        label[rows, gcol] = labc[rows, cc]
        sidemap[rows, gcol] = s.sign

    photo = cv.photo
    # --- ground -----------------------------------------------------------------------------------
    g = surf == 1
    Zg = t[g]
    Xg = Zg * DX[g]
    foot = Zg / cam.f  # metres per pixel across
    lab = np.full(Zg.shape, ROAD, np.uint8)
    albedo = np.broadcast_to(st.asphalt, (len(Zg), 3)).copy()
    ax_ = np.abs(Xg)
    for s in (st.left, st.right):
        on = np.sign(Xg) == s.sign
        inner = s.curb
        for band_lab, outer in s.bands:
            m = on & (ax_ >= inner) & (ax_ < outer)
            lab[m] = band_lab
            inner = outer
        beyond = on & (ax_ >= s.facade)
        if beyond.any():
            k = s.front.kind[s.front.index(Zg[beyond])]
            lab[beyond] = np.array([SIDEWALK, TERRAIN, TERRAIN, TERRAIN, ROAD, TERRAIN], np.uint8)[k]
            lab[on & (ax_ >= s.back)] = TERRAIN
    fine = tile_lookup(st.tiles["fine"], Zg * 30, Xg * 30) * _fade(foot, 0.1)
    mid = tile_lookup(st.tiles["mid"], Zg * 4, Xg * 4)
    coarse = tile_lookup(st.tiles["coarse"], Zg * 0.8, Xg * 0.8)
    road = lab == ROAD
    albedo[road] *= (1 + 0.16 * fine[road] + 0.08 * mid[road] + 0.1 * coarse[road])[:, None]
    # Tyre tracks: slightly darker/polished bands in each lane.
    for x0, x1, _ in st.lanes:
        c = (x0 + x1) / 2
        near = np.nonzero(road & (np.abs(Xg - c) < 1.25))[0]
        tr = near[np.abs(np.abs(Xg[near] - c) - 0.85) < 0.35]
        albedo[tr] *= 0.9
    # Lane markings, anti-aliased by the pixel footprint (only pixels within reach of each line).
    for xm, wm, period, duty, col in st.markings:
        near = np.nonzero(road & (np.abs(Xg - xm) < wm / 2 + np.maximum(foot, wm)))[0]
        fo, xg = foot[near], Xg[near]
        cover = np.clip((wm / 2 + np.maximum(fo, wm) / 2 - np.abs(xg - xm)) / np.maximum(fo, wm), 0, 1) * np.minimum(
            1, wm / fo
        )
        if period > 0:
            cover = cover * (np.mod(Zg[near], period) < period * duty)
        cover = (cover * (0.85 + 0.15 * mid[near]))[:, None]
        albedo[near] = albedo[near] * (1 - cover) + col[None, :] * cover
    if st.crosswalk is not None:
        z0, z1 = st.crosswalk
        stripe = road & (Zg > z0) & (Zg < z1) & (np.mod(Xg, 1.0) < 0.5) & (np.abs(Xg) < 30)
        kz = _fade(foot, 1.0)
        albedo[stripe] = albedo[stripe] * (1 - kz[stripe, None]) + st.markings[0][4] * kz[stripe, None]
    # Curb and gutter.
    for s in (st.left, st.right):
        d = s.sign * Xg - s.curb  # >0 on the sidewalk side
        curb = (d >= 0) & (d < 0.25) & (lab != ROAD)
        albedo[curb] = st.curb_col * (1 + 0.1 * fine[curb])[:, None]
        gutter = (d < 0) & (d > -0.3) & road
        albedo[gutter] *= 0.8
    side = lab == SIDEWALK
    tx, tz = st.tile
    joint = ((np.mod(Xg, tx) < 0.03) | (np.mod(Zg, tz) < 0.03)) * _fade(foot, min(tx, tz))
    albedo[side] = st.paver * ((1 - 0.25 * joint[side]) * (1 + 0.08 * fine[side] + 0.06 * mid[side]))[:, None]
    ter = lab == TERRAIN
    albedo[ter] = (
        st.grass
        * np.clip(1 + 0.3 * fine[ter] + 0.25 * mid[ter], 0.3, 2)[:, None]
        * (1 + np.array([0.25, 0.1, 0.0], np.float32) * coarse[ter, None])
    )
    lit = ~st.shadowed(Xg, np.zeros_like(Xg), Zg)
    photo[g] = albedo * st.light(np.array([0.0, 1.0, 0.0]), lit)
    label[g] = lab

    # --- facades, walls, back rows -----------------------------------------------------------------
    for s in (st.left, st.right):
        for kind_surf, F, dist in ((2, s.front, s.facade), (4, s.rear, s.back)):
            m = (surf == kind_surf) & (sidemap == s.sign)
            if not m.any():
                continue
            Z = t[m]
            Y = h - Z * DY[m]
            i = seg[m]
            lab = label[m]
            X = np.full(Z.shape, s.sign * dist)
            foot_y = Z / cam.f
            foot_s = Z * Z / (cam.f * dist)  # along the facade, grazing angle
            alb = np.empty((len(Z), 3), np.float32)
            b = lab == BUILDING
            if b.any():
                alb[b] = _facade_albedo(st, F, i[b], Z[b] - F.z0[i[b]], Y[b], foot_s[b], foot_y[b])
            v = lab == VEGETATION
            if v.any():
                alb[v] = _trees_albedo(st, Z[v], Y[v], foot_s[v])
            w = lab == WALL
            if w.any():
                alb[w] = F.color[i[w]] * (1 + 0.1 * tile_lookup(st.tiles["mid"], Y[w] * 8, Z[w] * 8))[:, None]
            fe = lab == FENCE
            if fe.any():
                bars = (np.mod(Z[fe], 0.15) < 0.04) | (np.abs(Y[fe] - F.height[i[fe]] + 0.1) < 0.06) | (Y[fe] < 0.3)
                kb = _fade(foot_s[fe], 0.15)
                dark = srgb_to_linear((60, 62, 58))
                bg = _trees_albedo(st, Z[fe], Y[fe], foot_s[fe]) * 0.6
                alb[fe] = np.where(bars[:, None], dark, bg * kb[:, None] + dark * 0.7 * (1 - kb[:, None]))
            normal = np.array([-s.sign, 0.0, 0.0])
            lit = ~st.shadowed(X - s.sign * 0.01, Y, Z)
            photo[m] = alb * st.light(normal, lit)
        m = (surf == 3) & (sidemap == s.sign)
        if m.any():
            Z = t[m]
            Y = h - Z * DY[m]
            X = Z * DX[m]
            i = seg[m]
            alb = _facade_albedo(st, s.front, i, np.abs(X) - s.facade, Y, Z / cam.f, Z / cam.f) * 0.9
            photo[m] = alb * st.light(np.array([0.0, 0.0, -1.0]), ~st.shadowed(X, Y, Z - 0.01))

    # --- sky -----------------------------------------------------------------------------------------
    sky = surf == 0
    rs, cs = np.nonzero(sky)
    elev = np.clip(-dy / 0.8, 0, 1) ** 0.6  # per row: 0 at the horizon, 1 high up
    e = elev[rs][:, None].astype(np.float32)
    grad = st.sky_horizon[None, :] * (1 - e) + st.sky_top[None, :] * e
    sdy, sdx = dy[rs], dx[cs]
    cl = tile_lookup(st.tiles["coarse"], sdy * 60, sdx * 25) + 0.5 * tile_lookup(st.tiles["mid"], sdy * 150, sdx * 60)
    cloud = np.clip((cl - (1.0 - st.cloudiness)) * 2.0, 0, 1)[:, None]
    photo[rs, cs] = (grad * (1 - cloud) + np.float32(0.95) * np.array([1.0, 1.0, 1.02], np.float32) * cloud) * 1.1
    cv.labels[:] = label
    cv.instances[:] = label
    cv.depth[:] = np.minimum(np.where(surf == 0, SKY_DEPTH, t), SKY_DEPTH).astype(np.float32)
    # Ground right under the horizon is farther than anything drawn; keep it below the sky depth.
    cv.depth[surf != 0] = np.minimum(cv.depth[surf != 0], SKY_DEPTH - 1)
