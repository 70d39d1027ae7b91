#!/usr/bin/env python
"""Aharoni and Israelov's comparison on the synthetic scenes: two-stage street generation (layout GAN ->
SPADE) vs the same StyleGAN2 trained directly on photos, against held-out real scenes, with the floor.

    python benchmarks/two_stage_comparison.py --out benchmarks/results/cpu-amd-epyc-2c/DATE-two-stage-comparison

Rows, on held-out scenes ``--seeds`` and ``--n`` generated samples (seeds 0..n-1):

(a) generated vs real label maps: ``benchmarks/layout_metrics.py``'s figures (its layout Fréchet distance
    is on a fixed random-init encoder of one-hot maps, another feature space than the rows below);
(b) the demo SPADE's photos of the generated layouts (argmax, specks merged, instance map, nearest-resized
    to SPADE's size, rendered with the sample's seed) vs the real photos;
(c) the photo GAN's samples vs the real photos;
(d) the floor: the real photos vs those of other scenes (``--floor-seeds``, the same distribution);
plus two references: the demo SPADE's photos of the real maps (the two-stage path with perfect layouts),
and the real scenes rendered directly at the common size (what the photo GAN trained on: the synthetic
renderer draws each size itself, it does not downscale).

(b)-(d) are the segmenter-feature Fréchet distance (``cityserve eval generator``'s ``segfeat_frechet``:
the demo segmenter's stride-32 encoder features, one vector per position), an in-domain stand-in for FID,
not FID. Every photo set is first area-resized to the common ``--size`` (the photo GAN's 64x128; real
photos are rendered at SPADE's 256x512 and resized like SPADE's), then goes through the segmenter's own
resize to its 128x256, so no set is favoured by its resolution. ``--native`` adds the two-stage and floor
rows at 256x512 (labelled: the photo GAN has no such row). The spread is over bootstrap resamples of
the scenes (same resample indices for every row). Writes OUT.json and OUT.md. ``--cache FILE.npz`` keeps
each photo set's features (keyed by set, card sha256, seeds and size) so a rerun with another photo-GAN
card only recomputes that card's set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cityserve.cards import environment, load_card  # noqa: E402
from cityserve.cliutil import parse_seeds  # noqa: E402
from cityserve.data.synthetic import generate_scene  # noqa: E402
from cityserve.data.transforms import resize_photo  # noqa: E402
from cityserve.engines.base import Renderer  # noqa: E402
from cityserve.evaluation import Segmenter  # noqa: E402
from cityserve.hardware import cpu_name  # noqa: E402
from cityserve.labels import fit_nearest, get_label_set  # noqa: E402
from cityserve.labels.snapping import instance_map, logits_to_ids, remove_specks  # noqa: E402
from cityserve.metrics import frechet_from_features  # noqa: E402
from cityserve.metrics_layouts import layout_report  # noqa: E402
from cityserve.models.layout_sample import layout_generator_from_card, sample_logits  # noqa: E402
from cityserve.models.photo_gan import photo_generator_from_card, sample_photos  # noqa: E402

DEFAULTS = {
    "layout": "models/demo/layout-demo.card.json",
    "spade": "models/demo/spade-demo.card.json",
    "photo_gan": "models/baselines/photo-gan-demo/photo-gan-demo.card.json",
    "segmenter": "models/demo/segmenter-demo.card.json",
}


def card_info(card) -> dict:
    path = Path(card.path).resolve()
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return {"path": str(rel), "sha256": card.sha256, "step": card.provenance.get("step")}


def two_stage_photos(layout_card, renderer: Renderer, seeds: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(the snapped layouts at the layout card's size, SPADE's photos of them at SPADE's size)."""
    G = layout_generator_from_card(layout_card)
    n = get_label_set(layout_card.label_set).num_ids
    ids_all, photos = [], []
    for seed, lg in zip(seeds, sample_logits(G, layout_card, seeds).numpy()):
        ids = remove_specks(logits_to_ids(lg, n), layout_card.layout.min_area)
        inst = instance_map(ids, layout_card.label_set, layout_card.layout.instance_connectivity)
        lab, ins, _ = fit_nearest(ids, renderer.height, renderer.width, inst)
        photos.append(renderer.render(lab, instances=ins if renderer.io.use_instance else None, seed=seed)[0])
        ids_all.append(ids)
    return ids_all, photos


def segfeat(seg: Segmenter, photos: list[np.ndarray], size: tuple[int, int] | None) -> list[np.ndarray]:
    """Per photo, its feature vectors [positions, C] (photos area-resized to ``size`` first, if given)."""
    out = []
    for p in photos:
        img = resize_photo(p, *size) if size is not None else p
        out.append(seg.segment(img[None])[1])
    return out


class FeatureCache:
    """Per photo set, its per-photo feature arrays, in an .npz (None: no file, compute everything)."""

    def __init__(self, path: Path | None):
        self.path, self.sets, self.reused = path, {}, []
        if path is not None and path.is_file():
            with np.load(path) as z:
                for k in z.files:
                    key, i = k.rsplit("#", 1)
                    self.sets.setdefault(key, {})[int(i)] = z[k]

    def get(self, key: str, make) -> list[np.ndarray]:
        if key in self.sets:
            self.reused.append(key.split("|")[0])
        else:
            self.sets[key] = dict(enumerate(make()))
            if self.path is not None:
                arrays = {f"{k}#{i}": v for k, d in self.sets.items() for i, v in d.items()}
                np.savez(self.path, **arrays)
        d = self.sets[key]
        return [d[i] for i in range(len(d))]


def distance(a: list[np.ndarray], b: list[np.ndarray], boots: list[np.ndarray]) -> dict:
    """The Fréchet distance of two per-photo feature lists, and its mean / std over scene resamples."""
    d = frechet_from_features(np.concatenate(a), np.concatenate(b))
    bs = [
        frechet_from_features(np.concatenate([a[i] for i in ia]), np.concatenate([b[i] for i in ib]))
        for ia, ib in boots
    ]
    return {
        "segfeat_frechet": round(d, 3),
        "bootstrap_mean": round(float(np.mean(bs)), 3),
        "bootstrap_std": round(float(np.std(bs)), 3),
    }


def markdown(doc: dict) -> str:
    la = doc["rows"]["generated_maps_vs_real_maps"]
    fl = doc["rows"]["floor_maps"]
    r = doc["rows"]
    size = "x".join(map(str, doc["common_size"]))

    def seg_row(name: str, key: str) -> str:
        x = r[key]
        return f"| {name} | {x['segfeat_frechet']:.3f} | {x['bootstrap_mean']:.3f} ± {x['bootstrap_std']:.3f} |"

    lines = [
        "# Two-stage street generation vs an unconditional photo GAN (the paper's comparison, synthetic scenes)",
        "",
        f"Command ({doc['date']}, {doc['environment'].get('cpu', 'CPU')}, {os.cpu_count()} cores, 1-min load "
        f"{min(doc['load_average_1min']):.1f}-{max(doc['load_average_1min']):.1f}, torch {doc['environment'].get('torch')}; "
        f"{doc['seconds']:.0f} s"
        + (
            f"; the features of {', '.join(doc['cached_sets'])} came from --cache, an earlier run"
            if doc["cached_sets"]
            else ""
        )
        + "):",
        "",
        f"    {doc['command']}",
        "",
        f"Real: held-out scenes {doc['seeds']}; generated: seeds 0-{doc['n'] - 1}; floor: scenes {doc['floor_seeds']}.",
        f"Cards: layout {doc['cards']['layout']['path']} (step {doc['cards']['layout']['step']}), "
        f"SPADE {doc['cards']['spade']['path']}, photo GAN {doc['cards']['photo_gan']['path']} "
        f"(step {doc['cards']['photo_gan']['step']}), segmenter {doc['cards']['segmenter']['path']}.",
        "",
        "## Label maps (layout_metrics' figures; random-init encoder, not FID)",
        "",
        "| maps | class-frequency JSD | adjacency JSD | components distance | layout Fréchet distance |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| generated vs real maps | {la['class_frequency_jsd']:.4f} | {la['adjacency_jsd']:.4f} | {la['components_distance']:.3f} | {la['layout_fd']:.3f} |",
        f"| floor: real vs other real maps | {fl['class_frequency_jsd']:.4f} | {fl['adjacency_jsd']:.4f} | {fl['components_distance']:.3f} | {fl['layout_fd']:.3f} |",
        "",
        f"## Photos: segmenter-feature Fréchet distance (not FID), every set area-resized to {size}",
        "",
        f"| photos vs real photos | distance | bootstrap ({doc['bootstrap']} resamples) |",
        "| --- | ---: | ---: |",
        seg_row("two-stage: demo SPADE photos of the generated layouts", "two_stage_vs_real"),
        seg_row("photo GAN samples (the same StyleGAN2 trained on photos)", "photo_gan_vs_real"),
        seg_row("floor: other real scenes", "floor_real_vs_real"),
        seg_row("reference: demo SPADE photos of the real maps", "spade_on_real_maps_vs_real"),
        seg_row(
            f"reference: the real scenes rendered directly at {size} (the photo GAN's training form)",
            "real_rendered_small_vs_real",
        ),
    ]
    if "native" in doc:
        nat = doc["native"]
        lines += [
            "",
            f"At native resolution ({'x'.join(map(str, nat['size']))}, no resize before the segmenter's own; the photo GAN has no such row):",
            "",
            "| photos vs real photos | distance | bootstrap |",
            "| --- | ---: | ---: |",
        ]
        for name, key in (
            ("two-stage", "two_stage_vs_real"),
            ("floor", "floor_real_vs_real"),
            ("SPADE on real maps", "spade_on_real_maps_vs_real"),
        ):
            x = nat[key]
            lines.append(
                f"| {name} | {x['segfeat_frechet']:.3f} | {x['bootstrap_mean']:.3f} ± {x['bootstrap_std']:.3f} |"
            )
    lines += ["", doc["note"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), default=v)
    p.add_argument("--seeds", default="10000-10049", help="held-out real scenes")
    p.add_argument("--floor-seeds", default="11000-11049", help="other real scenes: the floor")
    p.add_argument("--n", type=int, default=50, help="generated samples (seeds 0..n-1)")
    p.add_argument("--size", default="64x128", help="the common resolution every photo set is area-resized to")
    p.add_argument("--native", action="store_true", help="also the two-stage and floor rows at SPADE's size")
    p.add_argument("--bootstrap", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--cache", type=Path, help="an .npz of the photo sets' features, reused when it has them")
    p.add_argument("--out", type=Path, help="writes OUT.json and OUT.md")
    a = p.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(a.threads)
    loads = [os.getloadavg()[0]]
    size = tuple(int(x) for x in a.size.split("x"))
    lcard, scard, pcard, segcard = (load_card(x) for x in (a.layout, a.spade, a.photo_gan, a.segmenter))
    renderer = Renderer.from_card(scard)
    big = (renderer.height, renderer.width)
    seeds, floor_seeds, gen_seeds = parse_seeds(a.seeds), parse_seeds(a.floor_seeds), list(range(a.n))
    cache = FeatureCache(a.cache)
    sz = f"{size[0]}x{size[1]}"
    real = [generate_scene(s, *big) for s in seeds]
    # (a) label maps at the layout card's size, as layout_metrics.py draws them
    n_ids = get_label_set(lcard.label_set).num_ids
    lh, lw = lcard.height, lcard.width
    real_maps = [generate_scene(s, lh, lw).labels for s in seeds]
    floor_maps = [generate_scene(s, lh, lw).labels for s in floor_seeds]
    G = layout_generator_from_card(lcard)
    gen_maps = [
        remove_specks(logits_to_ids(lg, n_ids), lcard.layout.min_area)
        for lg in sample_logits(G, lcard, gen_seeds).numpy()
    ]
    seg = Segmenter(segcard, native_size=True, features="positions")
    tag = f"{segcard.sha256[:12]}|{sz}"
    two_stage: list = []

    def make_two_stage() -> list[np.ndarray]:
        two_stage[:] = two_stage_photos(lcard, renderer, gen_seeds)[1]
        return segfeat(seg, two_stage, size)

    def make_spade_real() -> list[np.ndarray]:
        photos = [
            renderer.render(sc.labels, instances=sc.instances if renderer.io.use_instance else None, seed=s)[0]
            for s, sc in zip(seeds, real)
        ]
        return segfeat(seg, photos, size)

    f = {
        "real": cache.get(f"real|{a.seeds}|{big}|{tag}", lambda: segfeat(seg, [sc.photo for sc in real], size)),
        "floor": cache.get(
            f"floor|{a.floor_seeds}|{big}|{tag}",
            lambda: segfeat(seg, [generate_scene(s, *big).photo for s in floor_seeds], size),
        ),
        "two_stage": cache.get(f"two_stage|{lcard.sha256[:12]}|{scard.sha256[:12]}|{a.n}|{tag}", make_two_stage),
        "spade_real": cache.get(f"spade_real|{scard.sha256[:12]}|{a.seeds}|{tag}", make_spade_real),
        "small_real": cache.get(
            f"small_real|{a.seeds}|{tag}", lambda: segfeat(seg, [generate_scene(s, *size).photo for s in seeds], size)
        ),
    }
    loads.append(os.getloadavg()[0])
    f["gan"] = cache.get(
        f"gan|{pcard.sha256[:12]}|{a.n}|{tag}",
        lambda: segfeat(seg, list(sample_photos(photo_generator_from_card(pcard), gen_seeds)), size),
    )
    loads.append(os.getloadavg()[0])
    rng = np.random.default_rng(0)
    boots = [(rng.integers(0, len(seeds), len(seeds)), rng.integers(0, a.n, a.n)) for _ in range(a.bootstrap)]
    floor_boots = [(ia, rng.integers(0, len(floor_seeds), len(floor_seeds))) for ia, _ in boots]
    same_boots = [(ia, ia) for ia, _ in boots]  # paired scenes: one resample for both sides
    rows = {
        "generated_maps_vs_real_maps": layout_report(real_maps, gen_maps, n_ids),
        "floor_maps": layout_report(real_maps, floor_maps, n_ids),
        "two_stage_vs_real": distance(f["two_stage"], f["real"], [(ib, ia) for ia, ib in boots]),
        "photo_gan_vs_real": distance(f["gan"], f["real"], [(ib, ia) for ia, ib in boots]),
        "floor_real_vs_real": distance(f["floor"], f["real"], [(ib, ia) for ia, ib in floor_boots]),
        "spade_on_real_maps_vs_real": distance(f["spade_real"], f["real"], same_boots),
        "real_rendered_small_vs_real": distance(f["small_real"], f["real"], same_boots),
    }
    doc = {
        "kind": "two-stage-comparison",
        "command": " ".join(
            ["python", "benchmarks/two_stage_comparison.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seeds": a.seeds,
        "floor_seeds": a.floor_seeds,
        "n": a.n,
        "common_size": list(size),
        "bootstrap": a.bootstrap,
        "cards": {k: card_info(c) for k, c in zip(DEFAULTS, (lcard, scard, pcard, segcard))},
        "segfeat": {
            "features": seg.feature_description(),
            "pooling": "one vector per spatial position",
            "segmenter_input": f"{seg.own[0]}x{seg.own[1]}",
            "resize": f"every photo area-resized to {size[0]}x{size[1]}, then the segmenter's own resize",
        },
        "rows": rows,
    }
    if a.native:  # not cached: it needs the photos themselves
        if not two_stage:
            two_stage = two_stage_photos(lcard, renderer, gen_seeds)[1]
        spade_real = [
            renderer.render(sc.labels, instances=sc.instances if renderer.io.use_instance else None, seed=s)[0]
            for s, sc in zip(seeds, real)
        ]
        fn = {
            "real": segfeat(seg, [sc.photo for sc in real], None),
            "floor": segfeat(seg, [generate_scene(s, *big).photo for s in floor_seeds], None),
            "two_stage": segfeat(seg, two_stage, None),
            "spade_real": segfeat(seg, spade_real, None),
        }
        doc["native"] = {
            "size": list(big),
            "two_stage_vs_real": distance(fn["two_stage"], fn["real"], [(ib, ia) for ia, ib in boots]),
            "floor_real_vs_real": distance(fn["floor"], fn["real"], [(ib, ia) for ia, ib in floor_boots]),
            "spade_on_real_maps_vs_real": distance(fn["spade_real"], fn["real"], same_boots),
        }
    loads.append(os.getloadavg()[0])
    doc["note"] = (
        "The segmenter-feature Fréchet distance is the demo segmenter's, trained on these synthetic scenes: "
        "in-domain and not comparable with the paper's Inception FID values (245.989 maps, 179.463 two-stage, "
        "247.257 photo GAN). The layout row is in another feature space (a random-init encoder of one-hot "
        "maps) and is read only against its own floor. Bootstrap: scenes resampled with replacement (repeated "
        "scenes raise every distance, so its mean sits above the full-set figure); read its ± as the spread."
    )
    doc["cached_sets"] = cache.reused  # features read from --cache (computed by an earlier run), not timed here
    doc["load_average_1min"] = loads
    doc["environment"] = {**environment(), "cpu": cpu_name()}
    doc["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(doc, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_text(text + "\n")
        a.out.with_suffix(".md").write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
