"""Road users of a synthetic street: cars, trucks and buses, pedestrians, cyclists and motorcyclists,
and the bonnet of the recording car.

Vehicles are boxes (their visible faces drawn with exact planar depth); people, riders and bicycles
are flat shapes in a vertical plane facing the camera. Drawers take world coordinates (X lateral, Z
distance of the near end, metres), the scene's ``Street`` and the instance id to write.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synthetic_objects import (
    BICYCLE,
    BILLBOARD_N,
    BUS_COLORS,
    CAR,
    CAR_COLORS,
    CLOTHES,
    DARK,
    EGO,
    M_FABRIC,
    M_METAL,
    M_PAINT,
    MOTORCYCLE,
    PERSON,
    RIDER,
    SKIN,
    TRUCK,
    cast_shadow,
    draw_box,
    glass_color,
    lit_at,
)
from .synthetic_photo import jitter_color, srgb_to_linear
from .synthetic_render import Canvas, billboard, box, ellipse2d, on_face, quad2d
from .synthetic_street import Street

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
    lit = lit_at(st, X, Ht * 0.6, Z + L / 2)
    cast_shadow(cv, st, (x0, x1, z0, z1), Ht)
    detail = cv.cam.f * Ht / Z >= 10  # pixels tall: far vehicles skip wheels, glass and lights
    r = 0.32 if label == CAR else 0.5
    for zc in (z0 + 0.75 + r, z1 - 0.75 - r) if detail else ():
        for xs in (x0 + 0.03, x1 - 0.27):
            draw_box(cv, st, box(xs, xs + 0.24, 0.0, 2 * r, zc - r * 0.9, zc + r * 0.9), label, inst, DARK, lit)
    front_is_near = heading < 0
    glass = glass_color(st, lit)
    if label == CAR:
        yb = rng.uniform(0.85, 1.0)
        body = box(x0, x1, 0.25, yb, z0, z1)
        faces = draw_box(cv, st, body, label, inst, paint, lit, M_PAINT)
        # Cabin, set towards the car's back, with slanted windows.
        if front_is_near:
            c0, c1 = z0 + L * rng.uniform(0.3, 0.38), z1 - L * rng.uniform(0.1, 0.18)
            shift = (0.45, 0.15)
        else:
            c0, c1 = z0 + L * rng.uniform(0.1, 0.18), z1 - L * rng.uniform(0.3, 0.38)
            shift = (0.15, 0.45)
        cab = box(x0 + 0.06, x1 - 0.06, yb, Ht, c0, c1, top_inset=(0.12, 0.0), top_shift=shift)
        for name, F, _n in draw_box(cv, st, cab, label, inst, paint, lit, M_PAINT):
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
            cab_faces = draw_box(cv, st, cab_box, label, inst, paint, lit, M_PAINT)
            for name, F, _n in cab_faces:
                if name in ("front", "back"):
                    cv.draw(on_face(F, 0.55, 0.9, 0.08, 0.92), label, inst, glass, bias=0.02, material=M_METAL)
                elif name in ("left", "right"):
                    cv.draw(on_face(F, 0.1, 0.9, 0.55, 0.9), label, inst, glass, bias=0.02, material=M_METAL)
            box_col = jitter_color(
                rng, [(225, 225, 225), (200, 200, 205), (150, 40, 30), (40, 70, 140)][rng.integers(4)], 0.05
            )
            faces = draw_box(cv, st, box(x0, x1, 0.5, Ht, cargo[0], cargo[1]), label, inst, box_col, lit, M_PAINT)
        else:
            faces = draw_box(cv, st, box(x0, x1, 0.3, Ht, z0, z1), label, inst, paint, lit, M_PAINT)
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
    lit = lit_at(st, X, y0 + s * 0.8, Z)
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
    lit = lit_at(st, X, 1.0, Z)
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
