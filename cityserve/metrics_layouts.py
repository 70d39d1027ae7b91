"""How close generated street layouts (label maps) are to real ones, without photos.

Four views, each comparing two sets of [H, W] id maps of one label set:

* ``class_frequency_jsd``: Jensen-Shannon divergence (base 2, 0..1) between the per-class pixel
  frequencies of the two sets: does the generator draw as much road, sky and car as the data?
* ``adjacency_distance``: the classes' 4-neighbour adjacency statistics (how often class a touches class
  b across a pixel edge, normalized to a distribution over unordered pairs), compared with the
  Jensen-Shannon divergence too: is the sky above buildings, are cars on the road?
* ``components_per_class``: mean connected components per map of each class (specks and fragmentation
  show up as many small components), and ``components_distance`` the mean absolute difference.
* ``layout_frechet_distance``: a Fréchet distance between Gaussian fits of features of the one-hot maps
  from ``LayoutEncoder``, a small convolutional encoder with fixed random weights (seeded, never
  trained). Random-init conv features are a known stand-in where no pretrained network exists for the
  domain; the numbers are only comparable between runs that use the same encoder seed, width and size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .metrics import frechet_from_features


def _maps(maps: Iterable[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(m) for m in maps]
    for m in out:
        if m.ndim != 2 or not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"a layout must be an [H, W] integer id map, not {m.dtype} of shape {m.shape}")
    if not out:
        raise ValueError("no layouts given")
    return out


def class_frequencies(maps: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """float64 [num_classes]: each class's share of all pixels of ``maps``."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for m in _maps(maps):
        counts += np.bincount(m.ravel().astype(np.int64), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1.0)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JS divergence in bits (0: equal, 1: disjoint supports) of two (unnormalized) distributions."""
    p = np.asarray(p, np.float64).ravel()
    q = np.asarray(q, np.float64).ravel()
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def class_frequency_jsd(real: Iterable[np.ndarray], fake: Iterable[np.ndarray], num_classes: int) -> float:
    return jensen_shannon(class_frequencies(real, num_classes), class_frequencies(fake, num_classes))


def adjacency_counts(maps: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """float64 [C, C], symmetric: pixel edges (4-neighbours) between class a and class b != a, over ``maps``;
    each unordered pair is counted once in [min, max] (the lower triangle stays 0)."""
    adj = np.zeros((num_classes, num_classes), dtype=np.float64)
    for m in _maps(maps):
        m = m.astype(np.int64)
        for a, b in ((m[:, 1:], m[:, :-1]), (m[1:, :], m[:-1, :])):
            diff = a != b
            lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
            adj += np.bincount(lo * num_classes + hi, minlength=num_classes * num_classes).reshape(
                num_classes, num_classes
            )
    return adj


def adjacency_distance(real: Iterable[np.ndarray], fake: Iterable[np.ndarray], num_classes: int) -> float:
    """JS divergence (bits) between the class-adjacency distributions of the two sets (0 when neither set
    has any boundary, or their boundaries are distributed alike)."""
    a, b = adjacency_counts(real, num_classes), adjacency_counts(fake, num_classes)
    if a.sum() == 0 and b.sum() == 0:
        return 0.0
    if a.sum() == 0 or b.sum() == 0:
        return 1.0
    return jensen_shannon(a, b)


def components_per_class(maps: Iterable[np.ndarray], num_classes: int, connectivity: int = 8) -> np.ndarray:
    """float64 [C]: mean number of connected components of each class per map (0 where a class never occurs)."""
    import cv2

    maps = _maps(maps)
    total = np.zeros(num_classes, dtype=np.float64)
    for m in maps:
        for c in np.unique(m).tolist():
            if 0 <= c < num_classes:
                n, _ = cv2.connectedComponents((m == c).astype(np.uint8), connectivity=connectivity)
                total[c] += n - 1
    return total / len(maps)


def components_distance(real: Iterable[np.ndarray], fake: Iterable[np.ndarray], num_classes: int) -> float:
    """Mean over classes of |components per map (real) - (fake)|."""
    return float(np.abs(components_per_class(real, num_classes) - components_per_class(fake, num_classes)).mean())


# ---- Fréchet distance on random-encoder features -------------------------------------------------------
def layout_encoder(num_classes: int, width: int = 32, seed: int = 0):
    """The fixed random encoder: 4 stride-2 3x3 convolutions + ReLU over one-hot maps, global average pool
    and max pool concatenated (2 * 4 * width features). Its weights are drawn from ``seed`` on the CPU
    (Kaiming normal), so every run with the same arguments uses the same encoder."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    chans = [num_classes, width, 2 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for i in range(4):
        conv = nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (chans[i] * 9)) ** 0.5)
            conv.bias.zero_()
        layers += [conv, nn.ReLU()]
    net = nn.Sequential(*layers).eval().requires_grad_(False)
    return net


def layout_features(
    maps: Sequence[np.ndarray], num_classes: int, width: int = 32, seed: int = 0, batch: int = 16
) -> np.ndarray:
    """float64 [N, 8 * width] features of ``maps`` from ``layout_encoder(num_classes, width, seed)``."""
    import torch

    net = layout_encoder(num_classes, width, seed)
    maps = _maps(maps)
    feats = []
    with torch.no_grad():
        for i in range(0, len(maps), batch):
            ids = torch.from_numpy(np.stack(maps[i : i + batch]).astype(np.int64))
            x = torch.nn.functional.one_hot(ids.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
            y = net(x)
            feats.append(torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1).double().numpy())
    return np.concatenate(feats)


def layout_frechet_distance(
    real: Sequence[np.ndarray], fake: Sequence[np.ndarray], num_classes: int, width: int = 32, seed: int = 0
) -> float:
    """Fréchet distance between the random-encoder features of two sets of layouts (see the module doc)."""
    return frechet_from_features(
        layout_features(real, num_classes, width, seed), layout_features(fake, num_classes, width, seed)
    )


def layout_report(real: Sequence[np.ndarray], fake: Sequence[np.ndarray], num_classes: int, seed: int = 0) -> dict:
    """All four numbers, as a card's ``metrics`` section records them."""
    return {
        "class_frequency_jsd": class_frequency_jsd(real, fake, num_classes),
        "adjacency_jsd": adjacency_distance(real, fake, num_classes),
        "components_distance": components_distance(real, fake, num_classes),
        "layout_fd": layout_frechet_distance(real, fake, num_classes, seed=seed),
        "layout_fd_encoder": {"kind": "random-init conv", "width": 32, "seed": seed},
        "real_maps": len(real),
        "generated_maps": len(fake),
    }
