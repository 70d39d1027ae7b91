"""Where things go in a synthetic street: parked and moving vehicles, people and two-wheelers on the
sidewalks and lanes, poles with signs and traffic lights, trees, railings and bushes, drawn far to
near so nearer objects cover farther ones.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import synthetic_objects as O
from . import synthetic_road_users as R
from .synthetic_render import Canvas
from .synthetic_street import TERRAIN, Street


def place_objects(cv: Canvas, st: Street, rng: np.random.Generator) -> None:
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
                    lambda cv, X=X, zz=zz, d=direction, lab=lab, s=int(rng.integers(2**31)): R.draw_vehicle(
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
                        R.draw_vehicle(cv, st, np.random.default_rng(s), X, zz, d, inst(lab), lab)
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
                lambda cv, X=X, Z=Z, view=view, sd=int(rng.integers(2**31)): R.draw_person(
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
                lambda cv, X=X, Z=Z, sd=int(rng.integers(2**31)): R.draw_person(
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
                lambda cv, X=X, Z=Z, view=view, motor=motor, sd=int(rng.integers(2**31)): R.draw_two_wheeler(
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
                    O.draw_box(
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
