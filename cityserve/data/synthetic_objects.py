"""The things in the street: their label ids, colors, shading helpers and materials, and the street
furniture (poles, signs, traffic lights, trees, railings, bushes); vehicles, people and two-wheelers
are drawn by ``synthetic_road_users``.

Poles are boxes (their visible faces drawn with exact planar depth); sign plates and tree crowns are
flat shapes in a vertical plane facing the camera. Every drawer takes world coordinates (X lateral, Z
distance of the near end, metres), the scene's ``Street`` (for light and shadows) and the instance id
to write.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synthetic_photo import jitter_color, srgb_to_linear, value_noise
from .synthetic_render import Canvas, billboard, box, ellipse2d, quad2d, visible_faces
from .synthetic_street import Street

EGO, POLE, LIGHT, SIGN, VEG = 1, 17, 19, 20, 21
PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 32, 33
GROUND_LABELS = (7, 8, 22)

# Materials: textures the photo gets after drawing (see apply_materials).
M_NONE, M_LEAVES, M_FABRIC, M_PAINT, M_METAL = 0, 1, 2, 3, 4

CAR_COLORS = [
    (235, 235, 235),
    (190, 192, 195),
    (30, 30, 34),
    (80, 82, 88),
    (150, 25, 25),
    (30, 55, 120),
    (20, 30, 60),
    (60, 90, 70),
    (200, 190, 160),
    (120, 110, 100),
    (210, 120, 30),
]
BUS_COLORS = [(230, 200, 40), (200, 30, 30), (235, 235, 230), (40, 90, 170), (40, 130, 80)]
SKIN = [(235, 200, 170), (210, 160, 120), (160, 110, 80), (100, 70, 50)]
CLOTHES = [
    (30, 30, 35),
    (60, 60, 70),
    (20, 40, 90),
    (120, 20, 30),
    (200, 200, 200),
    (90, 70, 50),
    (40, 80, 50),
    (150, 140, 120),
    (220, 120, 40),
    (70, 90, 140),
]
DARK = srgb_to_linear((22, 22, 24))
BILLBOARD_N = np.array([0.0, 0.35, -1.0]) / np.hypot(0.35, 1.0)


def _cam_pos(cv: Canvas) -> np.ndarray:
    return np.array([0.0, cv.cam.height, 0.0])


def lit_at(st: Street, X: float, Y: float, Z: float) -> float:
    return float(not st.shadowed(np.array([X]), np.array([Y]), np.array([Z]))[0])


def cast_shadow(cv: Canvas, st: Street, footprint: np.ndarray, height: float, strength: float = 0.55) -> None:
    """Darken the ground around and (sun-wise) behind an object: contact shadow + cast shadow."""
    x0, x1, z0, z1 = footprint
    pad = 0.12
    contact = np.array(
        [[x0 - pad, 0, z0 - pad], [x1 + pad, 0, z0 - pad], [x1 + pad, 0, z1 + pad], [x0 - pad, 0, z1 + pad]]
    )
    cv.draw(contact, 0, 0, np.full(3, 0.6, np.float32), photo_only=True, mask_labels=GROUND_LABELS, bias=0.5)
    if st.sun_k <= 0 or st.sun[1] < 0.1:
        return
    if lit_at(st, (x0 + x1) / 2, height / 2, (z0 + z1) / 2) == 0:
        return
    off = -st.sun * (height / st.sun[1])
    pts = np.array([[x0, z0], [x1, z0], [x1, z1], [x0, z1]])
    allp = np.concatenate([pts, pts + [off[0], off[2]]])
    hull = cv2.convexHull(allp.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    P = np.stack([hull[:, 0], np.zeros(len(hull)), hull[:, 1]], 1)
    k = np.float32(st.ambient / (st.ambient + st.sun_k * st.sun[1]))
    cv.draw(P, 0, 0, np.full(3, k, np.float32) * strength / 0.55, photo_only=True, mask_labels=GROUND_LABELS, bias=0.5)


def draw_box(
    cv: Canvas,
    st: Street,
    V: np.ndarray,
    label: int,
    inst: int,
    albedo,
    lit: float,
    material: int = M_NONE,
    bias: float = 0.0,
):
    faces = visible_faces(V, _cam_pos(cv))
    for name, F, n in faces:
        shade = 0.92 if name == "top" else 1.0
        cv.draw(F, label, inst, albedo * st.light(n, lit) * shade, material=material, bias=bias)
    return faces


def glass_color(st: Street, lit: float) -> np.ndarray:
    return srgb_to_linear((40, 46, 56)) * (0.5 + st.ambient * 0.6) + 0.06 * st.sky_horizon * (0.5 + 0.5 * lit)


# --- street furniture ------------------------------------------------------------------------------


def _pole_box(X, Z, h, w=0.12, y0=0.0):
    return box(X - w / 2, X + w / 2, y0, h, Z - w / 2, Z + w / 2)


def draw_pole(cv: Canvas, st: Street, X: float, Z: float, height: float, arm: float = 0.0) -> None:
    """A lamp post / plain pole; ``arm`` (signed metres) adds a horizontal arm with a lamp head."""
    lit = lit_at(st, X, height / 2, Z)
    col = srgb_to_linear((120, 122, 125))
    draw_box(cv, st, _pole_box(X, Z, height, 0.14), POLE, POLE, col, lit, M_METAL)
    if arm:
        xa = X + arm
        draw_box(
            cv, st, box(min(X, xa), max(X, xa), height - 0.12, height - 0.04, Z - 0.04, Z + 0.04), POLE, POLE, col, lit
        )
        draw_box(
            cv,
            st,
            box(xa - 0.3, xa + 0.3, height - 0.22, height - 0.06, Z - 0.15, Z + 0.15),
            POLE,
            POLE,
            col * 0.8,
            lit,
        )


def draw_sign(cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, height: float) -> None:
    """A sign post: the pole plus one or two plates facing the camera (or their grey backs)."""
    lit = lit_at(st, X, height, Z)
    draw_box(cv, st, _pole_box(X, Z, height + 0.05, 0.07), POLE, POLE, srgb_to_linear((140, 140, 140)), lit, M_METAL)
    light = st.light(np.array([0.0, 0.0, -1.0]), lit) * 0.7 + 0.3 * st.ambient
    y = height - 0.35
    for _k in range(1 + int(rng.random() < 0.35)):
        shape = rng.integers(5)
        r = rng.uniform(0.28, 0.4)
        if rng.random() < 0.2:  # the back of a sign for the other direction
            cv.draw(
                billboard(ellipse2d(0, y, r, r, 20), X, Z - 0.05), SIGN, SIGN, srgb_to_linear((150, 150, 150)) * light
            )
        elif shape == 0:  # prohibition: red ring, white disc
            cv.draw(
                [billboard(ellipse2d(0, y, r, r, 20), X, Z - 0.05)], SIGN, SIGN, srgb_to_linear((200, 20, 25)) * light
            )
            cv.draw(
                billboard(ellipse2d(0, y, r * 0.75, r * 0.75, 20), X, Z - 0.05),
                SIGN,
                SIGN,
                srgb_to_linear((240, 240, 240)) * light,
                bias=0.01,
            )
        elif shape == 1:  # mandatory: blue disc, white arrow
            cv.draw(
                billboard(ellipse2d(0, y, r, r, 20), X, Z - 0.05), SIGN, SIGN, srgb_to_linear((20, 70, 170)) * light
            )
            cv.draw(
                billboard(quad2d((0, y - r * 0.5), (0, y + r * 0.5), r * 0.2), X, Z - 0.05),
                SIGN,
                SIGN,
                srgb_to_linear((240, 240, 240)) * light,
                bias=0.01,
            )
        elif shape == 2:  # warning: red triangle
            tri = np.array([[0, y + r], [r * 1.1, y - r * 0.8], [-r * 1.1, y - r * 0.8]])
            cv.draw(billboard(tri, X, Z - 0.05), SIGN, SIGN, srgb_to_linear((200, 20, 25)) * light)
            cv.draw(
                billboard((tri - [0, y]) * 0.7 + [0, y - r * 0.1], X, Z - 0.05),
                SIGN,
                SIGN,
                srgb_to_linear((240, 240, 240)) * light,
                bias=0.01,
            )
        elif shape == 3:  # information: blue square
            sq = np.array([[-r, y - r], [r, y - r], [r, y + r], [-r, y + r]])
            cv.draw(billboard(sq, X, Z - 0.05), SIGN, SIGN, srgb_to_linear((20, 70, 170)) * light)
            cv.draw(
                billboard(sq * [0.3, 1] * 0.5 + [0, y * 0.5], X, Z - 0.05),
                SIGN,
                SIGN,
                srgb_to_linear((240, 240, 240)) * light,
                bias=0.01,
            )
        else:  # priority: yellow diamond
            dm = np.array([[0, y + r], [r, y], [0, y - r], [-r, y]])
            cv.draw(billboard(dm, X, Z - 0.05), SIGN, SIGN, srgb_to_linear((240, 240, 240)) * light)
            cv.draw(
                billboard((dm - [0, y]) * 0.65 + [0, y], X, Z - 0.05),
                SIGN,
                SIGN,
                srgb_to_linear((240, 190, 20)) * light,
                bias=0.01,
            )
        y -= 2.2 * r + 0.05


def draw_traffic_light(
    cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, y0: float, state: int
) -> None:
    """A housing with three lamps facing the camera; bottom at height y0; state 0 red, 1 amber, 2 green."""
    lit = lit_at(st, X, y0, Z)
    hw, hh = 0.16, 0.9
    draw_box(
        cv,
        st,
        box(X - hw, X + hw, y0, y0 + hh, Z - 0.12, Z + 0.12),
        LIGHT,
        LIGHT,
        srgb_to_linear((35, 37, 35)),
        lit,
        M_METAL,
    )
    cv.draw(
        billboard(
            np.array(
                [
                    [-hw - 0.06, y0 - 0.04],
                    [hw + 0.06, y0 - 0.04],
                    [hw + 0.06, y0 + hh + 0.04],
                    [-hw - 0.06, y0 + hh + 0.04],
                ]
            ),
            X,
            Z - 0.125,
        ),
        LIGHT,
        LIGHT,
        srgb_to_linear((25, 25, 25)) * st.light(np.array([0.0, 0.0, -1.0]), lit),
    )
    lamp_cols = [(255, 40, 30), (255, 170, 20), (40, 230, 120)]
    for k in range(3):
        on = k == state
        c = srgb_to_linear(lamp_cols[k]) * (2.5 if on else 0.08)
        cy = y0 + hh - (k + 0.5) * hh / 3
        cv.draw(billboard(ellipse2d(0, cy, 0.1, 0.1, 12), X, Z - 0.13), LIGHT, LIGHT, c, bias=0.01)


def draw_tree(cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, size: float) -> None:
    """A street tree: a trunk box and a crown of overlapping noisy blobs (all vegetation)."""
    lit = lit_at(st, X, 4.0, Z)
    trunk_h = size * rng.uniform(0.9, 1.2)
    draw_box(
        cv, st, _pole_box(X, Z, trunk_h + size * 0.5, 0.22), VEG, VEG, jitter_color(rng, (85, 70, 55), 0.1), lit, M_NONE
    )
    cast_shadow(cv, st, (X - size * 0.6, X + size * 0.6, Z - size * 0.6, Z + size * 0.6), trunk_h + size * 2, 0.55)
    leaf = jitter_color(rng, [(70, 100, 40), (60, 90, 45), (90, 110, 45), (55, 80, 40)][rng.integers(4)], 0.1)
    for k in range(5 if cv.cam.f * size / Z > 15 else 2):
        cx, cy = rng.normal(0, size * 0.35), trunk_h + size + rng.normal(0, size * 0.3)
        r = size * rng.uniform(0.55, 0.85)
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        rr = r * (
            1
            + 0.12 * np.sin(3 * t + rng.uniform(0, 6))
            + 0.08 * np.sin(7 * t + rng.uniform(0, 6))
            + 0.06 * rng.standard_normal(28)
        )
        poly = np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t) * 0.9], 1)
        shade = 0.75 + 0.25 * (cy - trunk_h) / (2 * size)
        cv.draw(
            billboard(poly, X, Z - 0.3 * k * size / 2),
            VEG,
            VEG,
            leaf * st.light(BILLBOARD_N, lit) * shade,
            material=M_LEAVES,
        )


def draw_railing(cv: Canvas, st: Street, rng: np.random.Generator, X: float, z0: float, z1: float) -> None:
    """A pedestrian guard rail along the curb (Cityscapes 'fence'): posts and two rails in the plane X."""
    FENCE = 13
    lit = lit_at(st, X, 0.5, (z0 + z1) / 2)
    col = jitter_color(rng, [(150, 150, 150), (90, 110, 90), (60, 60, 62)][rng.integers(3)], 0.08)
    c = col * st.light(np.array([-np.sign(X), 0.0, 0.0]), lit)
    hgt = rng.uniform(0.9, 1.2)
    for y0, y1 in ((hgt - 0.06, hgt), (hgt * 0.5 - 0.03, hgt * 0.5 + 0.03)):
        cv.draw(np.array([[X, y0, z0], [X, y0, z1], [X, y1, z1], [X, y1, z0]]), FENCE, FENCE, c, material=M_METAL)
    z = z0
    while z <= z1 + 1e-6:
        draw_box(cv, st, box(X - 0.03, X + 0.03, 0.0, hgt, z - 0.03, z + 0.03), FENCE, FENCE, col, lit, M_METAL)
        z += 1.5 if cv.cam.f * 0.06 / max(z, 0.5) > 0.3 else 4.5


def draw_bush(cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, w: float, h: float) -> None:
    lit = lit_at(st, X, h / 2, Z)
    t = np.linspace(0, np.pi, 16)
    rr = 1 + 0.1 * rng.standard_normal(16)
    poly = np.stack([w * np.cos(t) * rr, h * np.sin(t) * rr], 1)
    poly = np.concatenate([poly, [[-w, 0], [w, 0]]])
    cv.draw(
        billboard(poly, X, Z),
        VEG,
        VEG,
        jitter_color(rng, (65, 95, 40), 0.1) * st.light(BILLBOARD_N, lit),
        material=M_LEAVES,
    )


def apply_materials(cv: Canvas, rng: np.random.Generator) -> None:
    """Per-material texture on drawn objects: leaf clumps, cloth folds, paint speckle."""
    H, W = cv.labels.shape
    mat = cv.material
    if not mat.any():
        return
    leaves = mat == M_LEAVES
    if leaves.any():
        n1 = value_noise(rng, H, W, max(2.0, W / 250), 2)
        n2 = value_noise(rng, H, W, max(4.0, W / 60), 2)
        f = np.clip(1 + 0.5 * n1 + 0.35 * n2, 0.25, 2.0)
        cv.photo[leaves] *= f[leaves, None] * np.array([1.0, 1.0, 0.85], np.float32)
        cv.photo[leaves, 0] *= 1 + 0.15 * n2[leaves]
    fab = mat == M_FABRIC
    if fab.any():
        n = value_noise(rng, H, W, max(2.0, W / 200), 2)
        cv.photo[fab] *= (1 + 0.12 * n[fab])[:, None]
    paint = (mat == M_PAINT) | (mat == M_METAL)
    if paint.any():
        n = value_noise(rng, H, W, max(3.0, W / 100), 2)
        cv.photo[paint] *= (1 + 0.05 * n[paint])[:, None]
