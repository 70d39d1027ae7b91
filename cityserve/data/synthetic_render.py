"""The pinhole camera and the z-buffered canvas the synthetic street scenes are drawn on.

World coordinates are metres: X to the right, Y up (height above the ground plane), Z forward along
the street. The camera sits at (0, height, 0) looking down +Z with square pixels. Every polygon is
planar, so its exact per-pixel depth follows from the plane equation (``Z = d / (n . ray)``): the
depth map is the true geometry, and a z-test (not just painter's order) resolves occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SKY_DEPTH = 1000.0  # metres written for sky pixels (and the cap for everything else)
NEAR = 0.25  # near clipping plane, metres


@dataclass
class Camera:
    """Pinhole camera: focal length ``f`` and principal point (``cx``, ``cy``) in pixels."""

    f: float
    cx: float
    cy: float
    height: float
    H: int
    W: int

    def project(self, P: np.ndarray) -> np.ndarray:
        """World points [N,3] (X, Y-up, Z) -> pixel coordinates [N,2] (u, v), pixel centres at +0.5."""
        Z = P[:, 2]
        return np.stack([self.cx + self.f * P[:, 0] / Z, self.cy + self.f * (self.height - P[:, 1]) / Z], 1)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Ray slopes of the pixel centres: dx [W] = X/Z per column, dy [H] = drop/Z per row."""
        dx = (np.arange(self.W, dtype=np.float64) + 0.5 - self.cx) / self.f
        dy = (np.arange(self.H, dtype=np.float64) + 0.5 - self.cy) / self.f
        return dx, dy


def _clip_near(P: np.ndarray, near: float = NEAR) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon [N,3] against the plane Z = near."""
    if P[:, 2].min() >= near:
        return P
    out = []
    n = len(P)
    for i in range(n):
        a, b = P[i], P[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))


def newell_normal(P: np.ndarray) -> np.ndarray:
    """Unnormalised normal of a planar polygon [N,3] (robust to collinear vertices)."""
    Q = np.concatenate([P[1:], P[:1]])
    d, s = P - Q, P + Q
    return np.array([(d[:, 1] * s[:, 2]).sum(), (d[:, 2] * s[:, 0]).sum(), (d[:, 0] * s[:, 1]).sum()])


class Canvas:
    """Label, instance, depth and linear-RGB photo buffers with z-tested polygon drawing."""

    def __init__(self, cam: Camera):
        self.cam = cam
        H, W = cam.H, cam.W
        self.labels = np.zeros((H, W), np.uint8)
        self.instances = np.zeros((H, W), np.int32)
        self.depth = np.full((H, W), SKY_DEPTH, np.float32)
        self.photo = np.zeros((H, W, 3), np.float32)
        self.material = np.zeros((H, W), np.uint8)  # texture applied after drawing (see synthetic_objects)

    def draw(
        self,
        contours: list[np.ndarray] | np.ndarray,
        label: int,
        instance: int,
        color,
        bias: float = 0.0,
        ztest: bool = True,
        photo_only: bool = False,
        mask_labels: tuple[int, ...] | None = None,
        material: int = 0,
    ) -> None:
        """Fill planar world polygon(s) (a list of [N,3] contours, holes by even-odd) into the buffers.

        ``bias`` (metres) moves the polygon towards the camera in the z-test only, so decorations
        (windows, lights) drawn on a face win against that face. ``photo_only`` multiplies the photo
        by ``color`` (shadows) on pixels whose label is in ``mask_labels`` and leaves the rest alone.
        """
        if isinstance(contours, np.ndarray):
            contours = [contours]
        cam = self.cam
        clipped, pts2d = [], []
        for c in contours:
            c = np.asarray(c, np.float64)
            if c[:, 2].min() < NEAR:
                c = _clip_near(c)
            if len(c) < 3:
                continue
            iz = cam.f / c[:, 2]
            p = np.empty((len(c), 2))
            p[:, 0] = cam.cx + c[:, 0] * iz
            p[:, 1] = cam.cy + (cam.height - c[:, 1]) * iz
            clipped.append(c)
            pts2d.append(p)
        if not clipped:
            return
        allp = np.concatenate(pts2d) if len(pts2d) > 1 else pts2d[0]
        (ux0, vy0), (ux1, vy1) = allp.min(0), allp.max(0)
        x0 = max(int(np.floor(ux0)), 0)
        x1 = min(int(np.ceil(ux1)) + 1, cam.W)
        y0 = max(int(np.floor(vy0)), 0)
        y1 = min(int(np.ceil(vy1)) + 1, cam.H)
        if x1 <= x0 or y1 <= y0:
            return
        zlo = min(float(c[:, 2].min()) for c in clipped)
        if ztest and not photo_only and zlo - bias >= self.depth[y0:y1, x0:x1].max():
            return  # entirely behind what is already drawn
        # Fill with 4 bits of sub-pixel precision; a pixel is inside when its centre is.
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        off = np.array([x0 + 0.5, y0 + 0.5])
        polys = [np.round((p - off) * 16).astype(np.int32) for p in pts2d]
        cv2.fillPoly(mask, polys, 1, lineType=cv2.LINE_8, shift=4)
        m = mask.astype(bool)
        if not m.any():
            return
        P = clipped[0]
        zmin, zmax = zlo, max(float(c[:, 2].max()) for c in clipped)
        n = None
        if zmax - zmin > 1e-9:
            # Plane of the polygon in camera coordinates (x right, y down, z forward).
            Pc = np.stack([P[:, 0], cam.height - P[:, 1], P[:, 2]], 1)
            n = newell_normal(Pc)
            if abs(n).max() < 1e-12:
                n = None
        if n is None:
            z = (zmin + zmax) / 2
        else:
            d = float(n @ Pc[0])
            rx = (np.arange(x0, x1) + (0.5 - cam.cx)) * (n[0] / cam.f)
            ry = (np.arange(y0, y1) + (0.5 - cam.cy)) * (n[1] / cam.f) + n[2]
            denom = ry[:, None] + rx[None, :]
            denom[np.abs(denom) < 1e-12] = 1e-12
            z = np.clip(d / denom, zmin, zmax)
        sl = (slice(y0, y1), slice(x0, x1))
        if photo_only:
            if mask_labels is not None:
                m &= np.isin(self.labels[sl], mask_labels)
            if ztest:
                m &= self.depth[sl] >= z - bias
            if not m.any():
                return
            self.photo[sl][m] *= np.asarray(color, np.float32)
            return
        if ztest:
            m &= (z - bias) < self.depth[sl]
        if not m.any():
            return
        self.labels[sl][m] = label
        self.instances[sl][m] = instance
        self.depth[sl][m] = np.minimum(z[m] if np.ndim(z) else z, SKY_DEPTH - 1)
        self.photo[sl][m] = np.asarray(color, np.float32)
        self.material[sl][m] = material


# --- world-space shape helpers -------------------------------------------------------------------


def box(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    z0: float,
    z1: float,
    top_inset: tuple[float, float] = (0.0, 0.0),
    top_shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The 8 corners of a box (bottom 4 then top 4). ``top_inset`` = (x, z) narrows the top face by
    that much on each side and ``top_shift`` = (z_front, z_back) moves its front/back edges (cabins)."""
    ix, iz = top_inset
    sf, sb = top_shift
    return np.array(
        [
            [x0, y0, z0],
            [x1, y0, z0],
            [x1, y0, z1],
            [x0, y0, z1],
            [x0 + ix, y1, z0 + iz + sf],
            [x1 - ix, y1, z0 + iz + sf],
            [x1 - ix, y1, z1 - iz - sb],
            [x0 + ix, y1, z1 - iz - sb],
        ],
        np.float64,
    )


# Quad corner order: front/back faces run (bottom, top, ...) so on_face's a is vertical and b lateral;
# left/right faces run (near, far, ...) so a is along Z and b vertical.
BOX_FACES = {
    "bottom": (0, 1, 2, 3),
    "top": (4, 7, 6, 5),
    "front": (0, 4, 5, 1),  # front = the z0 face
    "back": (2, 6, 7, 3),
    "left": (0, 3, 7, 4),
    "right": (1, 2, 6, 5),
}


_FACE_NAMES = list(BOX_FACES)
_FACE_IDX = np.array([BOX_FACES[k] for k in _FACE_NAMES])


def visible_faces(V: np.ndarray, cam_pos: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, corners [4,3], outward unit normal) of the faces of a convex hexahedron facing the camera."""
    F = V[_FACE_IDX]  # [6,4,3]
    a, b = F[:, 2] - F[:, 0], F[:, 3] - F[:, 1]
    n = np.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        1,
    )
    nn = np.linalg.norm(n, axis=1)
    fc = F.mean(1)
    n = n / np.maximum(nn, 1e-12)[:, None]
    flip = np.einsum("ij,ij->i", n, fc - V.mean(0)) < 0
    n[flip] *= -1
    vis = (np.einsum("ij,ij->i", n, cam_pos[None, :] - fc) > 1e-9) & (nn > 1e-12)
    return [(_FACE_NAMES[k], F[k], n[k]) for k in np.nonzero(vis)[0]]


def on_face(F: np.ndarray, a0: float, a1: float, b0: float, b1: float) -> np.ndarray:
    """A sub-rectangle of quad face F [4,3] in its bilinear (a along F0->F1, b along F0->F3) coords."""

    def at(a, b):
        return (1 - a) * (1 - b) * F[0] + a * (1 - b) * F[1] + a * b * F[2] + (1 - a) * b * F[3]

    return np.array([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)])


def ellipse2d(cx: float, cy: float, rx: float, ry: float, n: int = 16, phase: float = 0.0) -> np.ndarray:
    t = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def quad2d(p: tuple[float, float], q: tuple[float, float], w0: float, w1: float | None = None) -> np.ndarray:
    """A limb: the quad around segment p->q, width w0 at p and w1 at q."""
    w1 = w0 if w1 is None else w1
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    L = np.hypot(*d) or 1e-6
    nrm = np.array([-d[1], d[0]]) / L
    return np.array([p + nrm * w0 / 2, q + nrm * w1 / 2, q - nrm * w1 / 2, p - nrm * w0 / 2])


def billboard(pts: np.ndarray, X: float, Z: float) -> np.ndarray:
    """2-D shape (lateral x, height y) in the vertical plane Z = const, placed at lateral X."""
    return np.stack([X + pts[:, 0], pts[:, 1], np.full(len(pts), Z)], 1)
