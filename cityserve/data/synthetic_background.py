"""The ray-cast background of a synthetic street: ground, facades, back plane and sky.

Ray casting the street's planes (``synthetic_street``) per pixel is exact and cheap: the facade hit
distance depends on the column only, so each side costs a few [H, W] array operations, and every
surface pixel knows its world coordinates, which drive the window grids, paving joints, lane markings
and cast shadows of the photo.
"""

from __future__ import annotations

import numpy as np

from .synthetic_photo import srgb_to_linear, tile_lookup
from .synthetic_render import SKY_DEPTH, Canvas
from .synthetic_street import (
    B_NONE,
    BUILDING,
    FENCE,
    K_BUILDING,
    K_OPEN,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    WALL,
    Facades,
    Street,
)


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
