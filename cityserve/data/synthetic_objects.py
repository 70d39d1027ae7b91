"""The things in the street: vehicles, people, two-wheelers, poles, signs, traffic lights, trees.

Vehicles and poles are boxes (their visible faces drawn with exact planar depth); people, riders,
bicycles, sign plates and tree crowns are flat shapes in a vertical plane facing the camera. Every
drawer takes world coordinates (X lateral, Z distance of the near end, metres), the scene's ``Street``
(for light and shadows) and the instance id to write.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synthetic_photo import jitter_color, srgb_to_linear, value_noise
from .synthetic_render import Canvas, billboard, box, ellipse2d, on_face, quad2d, visible_faces
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


def _lit(st: Street, X: float, Y: float, Z: float) -> float:
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
    if _lit(st, (x0 + x1) / 2, height / 2, (z0 + z1) / 2) == 0:
        return
    off = -st.sun * (height / st.sun[1])
    pts = np.array([[x0, z0], [x1, z0], [x1, z1], [x0, z1]])
    allp = np.concatenate([pts, pts + [off[0], off[2]]])
    hull = cv2.convexHull(allp.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    P = np.stack([hull[:, 0], np.zeros(len(hull)), hull[:, 1]], 1)
    k = np.float32(st.ambient / (st.ambient + st.sun_k * st.sun[1]))
    cv.draw(P, 0, 0, np.full(3, k, np.float32) * strength / 0.55, photo_only=True, mask_labels=GROUND_LABELS, bias=0.5)


def _draw_box(
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


def _glass(st: Street, lit: float) -> np.ndarray:
    return srgb_to_linear((40, 46, 56)) * (0.5 + st.ambient * 0.6) + 0.06 * st.sky_horizon * (0.5 + 0.5 * lit)


# --- vehicles ------------------------------------------------------------------------------------


def draw_vehicle(
    cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, heading: int, inst: int, label: int = CAR
) -> float:
    """A car, truck or bus with its near end at Z; heading +1 drives away, -1 comes towards us.
    Returns the vehicle's length."""
    if label == CAR:
        L, Wd, Ht = rng.uniform(3.8, 4.8), rng.uniform(1.68, 1.9), rng.uniform(1.38, 1.6)
        col = CAR_COLORS[rng.integers(len(CAR_COLORS))]
    elif label == TRUCK:
        L, Wd, Ht = rng.uniform(6.0, 9.0), rng.uniform(2.2, 2.5), rng.uniform(3.0, 3.8)
        col = CAR_COLORS[rng.integers(len(CAR_COLORS))]
    else:
        L, Wd, Ht = rng.uniform(10.5, 12.5), rng.uniform(2.45, 2.55), rng.uniform(2.9, 3.3)
        col = BUS_COLORS[rng.integers(len(BUS_COLORS))]
    paint = jitter_color(rng, col, 0.06)
    x0, x1, z0, z1 = X - Wd / 2, X + Wd / 2, Z, Z + L
    lit = _lit(st, X, Ht * 0.6, Z + L / 2)
    cast_shadow(cv, st, (x0, x1, z0, z1), Ht)
    detail = cv.cam.f * Ht / Z >= 10  # pixels tall: far vehicles skip wheels, glass and lights
    r = 0.32 if label == CAR else 0.5
    for zc in (z0 + 0.75 + r, z1 - 0.75 - r) if detail else ():
        for xs in (x0 + 0.03, x1 - 0.27):
            _draw_box(cv, st, box(xs, xs + 0.24, 0.0, 2 * r, zc - r * 0.9, zc + r * 0.9), label, inst, DARK, lit)
    front_is_near = heading < 0
    glass = _glass(st, lit)
    if label == CAR:
        yb = rng.uniform(0.85, 1.0)
        body = box(x0, x1, 0.25, yb, z0, z1)
        faces = _draw_box(cv, st, body, label, inst, paint, lit, M_PAINT)
        # Cabin, set towards the car's back, with slanted windows.
        if front_is_near:
            c0, c1 = z0 + L * rng.uniform(0.3, 0.38), z1 - L * rng.uniform(0.1, 0.18)
            shift = (0.45, 0.15)
        else:
            c0, c1 = z0 + L * rng.uniform(0.1, 0.18), z1 - L * rng.uniform(0.3, 0.38)
            shift = (0.15, 0.45)
        cab = box(x0 + 0.06, x1 - 0.06, yb, Ht, c0, c1, top_inset=(0.12, 0.0), top_shift=shift)
        for name, F, _n in _draw_box(cv, st, cab, label, inst, paint, lit, M_PAINT):
            if name != "top" and detail:
                cv.draw(
                    on_face(F, 0.08, 0.92, 0.06, 0.94)
                    if name in ("left", "right")
                    else on_face(F, 0.06, 0.94, 0.08, 0.92),
                    label,
                    inst,
                    glass,
                    bias=0.02,
                    material=M_METAL,
                )
    else:
        # Truck / bus: a cab or a single long box, windows in bands.
        if label == TRUCK:
            cab_len = 2.0
            cz0, cz1 = (z0, z0 + cab_len) if front_is_near else (z1 - cab_len, z1)
            cargo = (z0 + cab_len + 0.1, z1) if front_is_near else (z0, z1 - cab_len - 0.1)
            cab_box = box(x0 + 0.05, x1 - 0.05, 0.45, Ht * 0.8, cz0, cz1)
            cab_faces = _draw_box(cv, st, cab_box, label, inst, paint, lit, M_PAINT)
            for name, F, _n in cab_faces:
                if name in ("front", "back"):
                    cv.draw(on_face(F, 0.55, 0.9, 0.08, 0.92), label, inst, glass, bias=0.02, material=M_METAL)
                elif name in ("left", "right"):
                    cv.draw(on_face(F, 0.1, 0.9, 0.55, 0.9), label, inst, glass, bias=0.02, material=M_METAL)
            box_col = jitter_color(
                rng, [(225, 225, 225), (200, 200, 205), (150, 40, 30), (40, 70, 140)][rng.integers(4)], 0.05
            )
            faces = _draw_box(cv, st, box(x0, x1, 0.5, Ht, cargo[0], cargo[1]), label, inst, box_col, lit, M_PAINT)
        else:
            faces = _draw_box(cv, st, box(x0, x1, 0.3, Ht, z0, z1), label, inst, paint, lit, M_PAINT)
            for name, F, _n in faces:
                if name in ("left", "right"):
                    cv.draw(on_face(F, 0.04, 0.96, 0.45, 0.88), label, inst, glass, bias=0.02, material=M_METAL)
                elif name in ("front", "back"):
                    cv.draw(
                        on_face(F, 0.45 if front_is_near else 0.6, 0.92, 0.06, 0.94),
                        label,
                        inst,
                        glass,
                        bias=0.02,
                        material=M_METAL,
                    )
    # Lights, bumper and number plate on the near face.
    for name, F, n in faces:
        if name != "front" or not detail:
            continue
        bump = srgb_to_linear((40, 40, 42)) * st.light(n, lit)
        cv.draw(on_face(F, 0.0, 0.15, 0.0, 1.0), label, inst, bump, bias=0.01)
        lamp = srgb_to_linear((250, 240, 210) if front_is_near else (200, 20, 20)) * (1.3 if front_is_near else 1.0)
        la = (0.45, 0.7) if label == CAR else (0.1, 0.22)
        cv.draw(on_face(F, la[0], la[1], 0.03, 0.2), label, inst, lamp, bias=0.015)
        cv.draw(on_face(F, la[0], la[1], 0.8, 0.97), label, inst, lamp, bias=0.015)
        if label == CAR:
            cv.draw(
                on_face(F, 0.2, 0.4, 0.38, 0.62),
                label,
                inst,
                srgb_to_linear((220, 220, 215)) * st.light(n, lit),
                bias=0.015,
            )
    return L


# --- people and two-wheelers -----------------------------------------------------------------------


def _person_parts(rng, view: str, stride: float, scale: float):
    """(name, polygon [N,2]) of a person in metres (lateral, height), feet at y = 0."""
    s = scale
    parts = []
    if view == "front":
        hip = 0.5 * s
        for side in (-1, 1):
            foot = (side * (0.11 + stride * 0.2) * s, 0.0)
            parts.append(("legs", quad2d((side * 0.09 * s, hip), foot, 0.16 * s, 0.11 * s)))
            parts.append(("shoes", quad2d((foot[0], 0.06 * s), (foot[0], -0.0), 0.12 * s)))
        parts.append(
            ("top", np.array([[-0.18, 0.48], [0.18, 0.48], [0.23, 0.8], [0.15, 0.84], [-0.15, 0.84], [-0.23, 0.8]]) * s)
        )
        for side in (-1, 1):
            parts.append(
                (
                    "arms",
                    quad2d(
                        (side * 0.22 * s, 0.8 * s), (side * (0.27 + 0.03 * stride) * s, 0.47 * s), 0.09 * s, 0.075 * s
                    ),
                )
            )
            parts.append(("skin", ellipse2d(side * (0.275 + 0.03 * stride) * s, 0.45 * s, 0.035 * s, 0.045 * s, 8)))
        parts.append(("skin", quad2d((0, 0.83 * s), (0, 0.88 * s), 0.08 * s)))
        parts.append(("skin", ellipse2d(0, 0.93 * s, 0.06 * s, 0.075 * s, 12)))
        parts.append(("hair", ellipse2d(0, 0.965 * s, 0.063 * s, 0.05 * s, 12)))
    else:  # side view, walking to the right
        hip = 0.5 * s
        for sgn in (-1, 1):
            foot = (sgn * stride * 0.35 * s, 0.0)
            knee = (sgn * stride * 0.18 * s + 0.03 * s, 0.26 * s)
            parts.append(("legs", quad2d((0, hip), knee, 0.15 * s, 0.11 * s)))
            parts.append(("legs", quad2d(knee, foot, 0.11 * s, 0.08 * s)))
            parts.append(("shoes", quad2d((foot[0] - 0.02 * s, 0.03 * s), (foot[0] + 0.12 * s, 0.03 * s), 0.06 * s)))
        parts.append(("top", np.array([[-0.1, 0.48], [0.1, 0.48], [0.12, 0.82], [-0.1, 0.84]]) * s))
        for sgn in (-1, 1):
            hand = (-sgn * stride * 0.25 * s, 0.47 * s)
            parts.append(("arms", quad2d((0.0, 0.8 * s), hand, 0.08 * s, 0.065 * s)))
        parts.append(("skin", ellipse2d(0.02 * s, 0.93 * s, 0.065 * s, 0.075 * s, 12)))
        parts.append(("hair", ellipse2d(0.0, 0.965 * s, 0.062 * s, 0.05 * s, 12)))
    return parts


def draw_person(
    cv: Canvas,
    st: Street,
    rng: np.random.Generator,
    X: float,
    Z: float,
    inst: int,
    view: str = "front",
    label: int = PERSON,
    y0: float = 0.0,
    scale: float | None = None,
) -> None:
    """A pedestrian standing/walking at (X, Z); ``y0`` lifts the feet (riders on a saddle)."""
    s = scale or rng.uniform(1.55, 1.95)
    lit = _lit(st, X, y0 + s * 0.8, Z)
    light = st.light(BILLBOARD_N, lit)
    cols = {
        "legs": jitter_color(rng, CLOTHES[rng.integers(len(CLOTHES))], 0.1),
        "top": jitter_color(rng, CLOTHES[rng.integers(len(CLOTHES))], 0.1),
        "shoes": srgb_to_linear((30, 28, 26)),
        "skin": jitter_color(rng, SKIN[rng.integers(len(SKIN))], 0.05),
        "hair": jitter_color(rng, [(30, 22, 15), (80, 55, 30), (160, 130, 80), (120, 120, 120)][rng.integers(4)], 0.1),
    }
    cols["arms"] = cols["top"]
    if label == PERSON:
        cast_shadow(cv, st, (X - 0.25, X + 0.25, Z - 0.15, Z + 0.15), s, 0.55)
    stride = rng.uniform(0.0, 1.0) if label == PERSON else 0.3
    parts = _person_parts(rng, view, stride, s)
    if cv.cam.f * s / Z < 12:  # a few pixels tall: the silhouette is enough
        parts = [p for p in parts if p[0] in ("legs", "top", "hair")]
    for k, (name, poly) in enumerate(parts):
        poly = poly + [0.0, y0]
        cv.draw(billboard(poly, X, Z), label, inst, cols[name] * light, bias=0.0005 * k, material=M_FABRIC)


def draw_two_wheeler(
    cv: Canvas,
    st: Street,
    rng: np.random.Generator,
    X: float,
    Z: float,
    inst_vehicle: int,
    inst_rider: int,
    motor: bool,
    view: str,
) -> None:
    """A bicycle or motorcycle with its rider, seen from the side (crossing) or from behind."""
    label = MOTORCYCLE if motor else BICYCLE
    lit = _lit(st, X, 1.0, Z)
    light = st.light(BILLBOARD_N, lit)
    frame = jitter_color(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.1) * light
    tyre = DARK * light
    cast_shadow(
        cv, st, (X - 0.4, X + 0.4, Z - 0.2, Z + 0.2) if view == "back" else (X - 0.9, X + 0.9, Z - 0.2, Z + 0.2), 1.6
    )
    polys = []
    if view == "side":
        d = rng.choice([-1.0, 1.0])
        wb = 0.58 if not motor else 0.7
        r = 0.34 if not motor else 0.32
        for cx in (-wb, wb):
            outer = ellipse2d(cx * d, r, r, r, 20)
            inner = ellipse2d(cx * d, r, r - (0.05 if not motor else 0.1), r - (0.05 if not motor else 0.1), 20)
            polys.append(([outer, inner] if not motor else [outer], tyre))
            if motor:
                polys.append(([ellipse2d(cx * d, r, r * 0.45, r * 0.45, 12)], frame * 0.6))
        if motor:
            body = np.array([[-0.55, 0.45], [0.45, 0.45], [0.6, 0.85], [0.3, 0.95], [-0.2, 0.85], [-0.7, 0.75]]) * [
                d,
                1,
            ]
            polys.append(([body], frame))
            polys.append(([quad2d((0.55 * d, 0.9), (wb * d, r), 0.07)], DARK * light))
            seat_p, hand = (-0.25 * d, 0.9), (0.5 * d, 1.05)
        else:
            rear, bb, seat, head, front = (-wb * d, r), (-0.02 * d, 0.3), (-0.2 * d, 0.9), (0.42 * d, 0.92), (wb * d, r)
            for a, b in ((rear, bb), (bb, seat), (seat, head), (bb, head), (head, front), (rear, seat)):
                polys.append(([quad2d(a, b, 0.045)], frame))
            polys.append(
                ([quad2d((seat[0] - 0.1 * d, seat[1] + 0.02), (seat[0] + 0.1 * d, seat[1] + 0.02), 0.05)], DARK * light)
            )
            seat_p, hand = (seat[0], seat[1] + 0.02), (head[0] + 0.05 * d, head[1] + 0.08)
        for polyset, col in polys:
            cv.draw([billboard(p, X, Z) for p in polyset], label, inst_vehicle, col)
        # Rider, leaning forward.
        rc = {k: jitter_color(rng, CLOTHES[rng.integers(len(CLOTHES))], 0.1) * light for k in ("top", "legs")}
        skin = jitter_color(rng, SKIN[rng.integers(len(SKIN))], 0.05) * light
        hip = np.array(seat_p) + [0, 0.05]
        sh = hip + [0.28 * d, 0.52]
        knee = hip + [0.32 * d, -0.05 if not motor else -0.1]
        foot = (0.05 * d, 0.25 if not motor else 0.4)
        parts = [
            (quad2d(hip, knee, 0.15), rc["legs"]),
            (quad2d(knee, foot, 0.11), rc["legs"]),
            (quad2d(hip, sh, 0.3, 0.26), rc["top"]),
            (quad2d(sh, hand, 0.08, 0.07), rc["top"]),
            (
                ellipse2d(sh[0] + 0.08 * d, sh[1] + 0.17, 0.08, 0.095, 12),
                (srgb_to_linear((40, 40, 45)) * light) if motor else skin,
            ),
        ]
        for k, (p, col) in enumerate(parts):
            cv.draw(billboard(p, X, Z), RIDER, inst_rider, col, bias=0.05 + 0.001 * k, material=M_FABRIC)
    else:
        r = 0.34 if not motor else 0.32
        polys = [quad2d((0, 0), (0, 2 * r), 0.05 if not motor else 0.12)]
        cv.draw(billboard(polys[0], X, Z + 0.5), label, inst_vehicle, tyre)
        if motor:
            cv.draw(
                billboard(np.array([[-0.22, 0.45], [0.22, 0.45], [0.2, 0.85], [-0.2, 0.85]]), X, Z + 0.3),
                label,
                inst_vehicle,
                frame,
            )
            cv.draw(
                billboard(ellipse2d(0, 0.7, 0.05, 0.04, 8), X, Z + 0.1),
                label,
                inst_vehicle,
                srgb_to_linear((200, 20, 20)) * 1.2,
                bias=0.3,
            )
        cv.draw(billboard(quad2d((-0.3, 1.02), (0.3, 1.02), 0.035), X, Z - 0.2), label, inst_vehicle, DARK * light)
        rc = {k: jitter_color(rng, CLOTHES[rng.integers(len(CLOTHES))], 0.1) * light for k in ("top", "legs")}
        skin = jitter_color(rng, SKIN[rng.integers(len(SKIN))], 0.05) * light
        hy = 0.95
        parts = [
            (quad2d((-0.08, hy), (-0.12, 0.3), 0.14, 0.1), rc["legs"]),
            (quad2d((0.08, hy), (0.12, 0.45), 0.14, 0.1), rc["legs"]),
            (np.array([[-0.17, hy - 0.05], [0.17, hy - 0.05], [0.21, hy + 0.45], [-0.21, hy + 0.45]]), rc["top"]),
            (quad2d((-0.2, hy + 0.42), (-0.3, 1.02), 0.08), rc["top"]),
            (quad2d((0.2, hy + 0.42), (0.3, 1.02), 0.08), rc["top"]),
            (ellipse2d(0, hy + 0.58, 0.085, 0.1, 12), (srgb_to_linear((40, 40, 45)) * light) if motor else skin),
        ]
        for k, (p, col) in enumerate(parts):
            cv.draw(billboard(p, X, Z), RIDER, inst_rider, col, bias=0.001 * k, material=M_FABRIC)


# --- street furniture ------------------------------------------------------------------------------


def _pole_box(X, Z, h, w=0.12, y0=0.0):
    return box(X - w / 2, X + w / 2, y0, h, Z - w / 2, Z + w / 2)


def draw_pole(cv: Canvas, st: Street, X: float, Z: float, height: float, arm: float = 0.0) -> None:
    """A lamp post / plain pole; ``arm`` (signed metres) adds a horizontal arm with a lamp head."""
    lit = _lit(st, X, height / 2, Z)
    col = srgb_to_linear((120, 122, 125))
    _draw_box(cv, st, _pole_box(X, Z, height, 0.14), POLE, POLE, col, lit, M_METAL)
    if arm:
        xa = X + arm
        _draw_box(
            cv, st, box(min(X, xa), max(X, xa), height - 0.12, height - 0.04, Z - 0.04, Z + 0.04), POLE, POLE, col, lit
        )
        _draw_box(
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
    lit = _lit(st, X, height, Z)
    _draw_box(cv, st, _pole_box(X, Z, height + 0.05, 0.07), POLE, POLE, srgb_to_linear((140, 140, 140)), lit, M_METAL)
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
    lit = _lit(st, X, y0, Z)
    hw, hh = 0.16, 0.9
    _draw_box(
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
    lit = _lit(st, X, 4.0, Z)
    trunk_h = size * rng.uniform(0.9, 1.2)
    _draw_box(
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
    lit = _lit(st, X, 0.5, (z0 + z1) / 2)
    col = jitter_color(rng, [(150, 150, 150), (90, 110, 90), (60, 60, 62)][rng.integers(3)], 0.08)
    c = col * st.light(np.array([-np.sign(X), 0.0, 0.0]), lit)
    hgt = rng.uniform(0.9, 1.2)
    for y0, y1 in ((hgt - 0.06, hgt), (hgt * 0.5 - 0.03, hgt * 0.5 + 0.03)):
        cv.draw(np.array([[X, y0, z0], [X, y0, z1], [X, y1, z1], [X, y1, z0]]), FENCE, FENCE, c, material=M_METAL)
    z = z0
    while z <= z1 + 1e-6:
        _draw_box(cv, st, box(X - 0.03, X + 0.03, 0.0, hgt, z - 0.03, z + 0.03), FENCE, FENCE, col, lit, M_METAL)
        z += 1.5 if cv.cam.f * 0.06 / max(z, 0.5) > 0.3 else 4.5


def draw_bush(cv: Canvas, st: Street, rng: np.random.Generator, X: float, Z: float, w: float, h: float) -> None:
    lit = _lit(st, X, h / 2, Z)
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


def draw_ego_vehicle(cv: Canvas, st: Street, rng: np.random.Generator) -> None:
    """The bonnet of the recording car along the bottom edge (Cityscapes 'ego vehicle', id 1),
    reflecting the scene above it."""
    cam = cv.cam
    H, W = cam.H, cam.W
    top = H * (1 - rng.uniform(0.06, 0.11))
    bulge = H * rng.uniform(0.02, 0.05)
    xs = (np.arange(W) + 0.5 - W / 2) / (W / 2)
    edge = top + bulge * xs**2
    rows = np.arange(H)[:, None] + 0.5
    m = rows > edge[None, :]
    if not m.any():
        return
    depth = np.float32(rng.uniform(1.6, 2.4))
    paint = jitter_color(rng, [(25, 25, 30), (200, 200, 205), (40, 50, 80)][rng.integers(3)], 0.05)
    # Mirror image of the rows just above the bonnet, darkened and smeared: a glossy reflection.
    src_rows = np.clip((2 * edge[None, :] - rows).astype(np.int64), 0, H - 1)
    refl = cv.photo[src_rows, np.arange(W)[None, :]]
    refl = cv2.blur(refl, (max(3, W // 60), max(3, H // 60)))
    col = paint * st.ambient + 0.25 * refl
    cv.photo[m] = col[m]
    cv.labels[m] = EGO
    cv.instances[m] = EGO
    cv.depth[m] = depth
    cv.material[m] = M_PAINT


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
