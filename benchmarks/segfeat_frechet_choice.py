#!/usr/bin/env python
"""Which segmenter features make a stable Fréchet distance on 50 held-out scenes? (the choice behind
``segfeat_frechet`` in ``cityserve eval generator``)

    python benchmarks/segfeat_frechet_choice.py                 # writes benchmarks/studies/segfeat-frechet-choice.{json,md}
    python benchmarks/segfeat_frechet_choice.py --n 8 --boot 3  # a quick look

For the demo segmenter (FCHarDNet at 128x256) it compares feature variants, each as one Fréchet distance:
the deepest stage (320 channels, stride 64) global-average-pooled (one vector per image, as FID pools
Inception), the same stage per spatial position, and the stride-32 stage (224 channels) per position.
For each it reports: real photos of seeds A vs real photos of other seeds B (the same distribution: the
noise floor), each demo generator's photos of A vs the real photos of A, and the spread of each figure
over bootstrap resamples of the scenes. A useful variant ranks the generators with a gap well above the
spread and a noise floor well below the generators' distances.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cityserve.cards import load_card  # noqa: E402
from cityserve.data.synthetic import generate_scene  # noqa: E402
from cityserve.data.transforms import resize_photo  # noqa: E402
from cityserve.engines import Renderer  # noqa: E402
from cityserve.metrics import frechet_from_features  # noqa: E402
from cityserve.models.encoder_features import feature_vectors  # noqa: E402
from cityserve.models.segment import segment_graph_from_card  # noqa: E402

SEG = REPO / "models/demo/segmenter-demo.card.json"
GENERATORS = {
    "spade-demo": REPO / "models/demo/spade-demo.card.json",
    "pix2pix-demo": REPO / "models/baselines/pix2pix-demo/pix2pix-demo.card.json",
}
CHOICE = (
    "`cityserve eval generator` uses stride32/positions (cityserve/models/encoder_features.py): the only variant "
    "with a full-rank covariance and a noise floor well below the generators' distances; at 50 scenes no "
    "variant tells these two demo generators apart (their paired difference is within its spread)."
)
VARIANTS = {
    "deepest/global": (17, "global"),
    "deepest/positions": (17, "positions"),
    "stride32/global": (14, "global"),
    "stride32/positions": (14, "positions"),
}


def features(graph, photos: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per variant, a list (one entry per photo) of feature-vector arrays."""
    net = graph.net
    size = (128, 256)
    out: dict[str, list[np.ndarray]] = {k: [] for k in VARIANTS}
    for photo in photos:
        maps = {}
        hooks = [
            net.base[i].register_forward_hook(lambda m, a, o, i=i, maps=maps: maps.__setitem__(i, o.detach()))
            for i in {v[0] for v in VARIANTS.values()}
        ]
        with torch.inference_mode():
            graph(torch.from_numpy(resize_photo(photo, *size)[None].copy()))
        for h in hooks:
            h.remove()
        for name, (layer, pooling) in VARIANTS.items():
            out[name].append(feature_vectors(maps[layer], pooling))
    return out


def fd(a: list[np.ndarray], b: list[np.ndarray], idx=None) -> float:
    idx = range(len(a)) if idx is None else idx
    return frechet_from_features(np.concatenate([a[i] for i in idx]), np.concatenate([b[i] for i in idx]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50, help="scenes per set (default 50)")
    p.add_argument("--boot", type=int, default=20, help="bootstrap resamples (default 20)")
    p.add_argument("--out", default=str(REPO / "benchmarks/studies/segfeat-frechet-choice.json"))
    args = p.parse_args()
    t0, load0 = time.time(), os.getloadavg()
    graph = segment_graph_from_card(load_card(SEG))
    seeds_a = list(range(10000, 10000 + args.n))
    seeds_b = list(range(10000 + args.n, 10000 + 2 * args.n))
    scenes_a = [generate_scene(s, 256, 512) for s in seeds_a]
    real_a = features(graph, [s.photo for s in scenes_a])
    real_b = features(graph, [generate_scene(s, 256, 512).photo for s in seeds_b])
    gens = {}
    for name, card in GENERATORS.items():
        r = Renderer.from_card(str(card))
        photos = [r.render(s.labels, instances=s.instances, seed=seed)[0] for s, seed in zip(scenes_a, seeds_a)]
        gens[name] = features(graph, photos)
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, args.n, args.n) for _ in range(args.boot)]
    rows = {}
    for v in VARIANTS:
        row = {"dims": int(real_a[v][0].shape[1]), "vectors_per_set": int(sum(len(x) for x in real_a[v]))}
        pairs = {"real A vs real B (noise floor)": (real_a[v], real_b[v])}
        pairs.update({f"{g} vs real A": (gens[g][v], real_a[v]) for g in gens})
        per_boot = {}
        for label, (x, y) in pairs.items():
            vals = per_boot[label] = np.array([fd(x, y, b) for b in boots])
            row[label] = {"value": fd(x, y), "bootstrap_mean": float(vals.mean()), "bootstrap_std": float(vals.std())}
        g1, g2 = list(gens)
        diff = per_boot[f"{g1} vs real A"] - per_boot[f"{g2} vs real A"]
        value = row[f"{g1} vs real A"]["value"] - row[f"{g2} vs real A"]["value"]
        row[f"{g1} minus {g2} (paired)"] = {
            "value": value,
            "bootstrap_mean": float(diff.mean()),
            "bootstrap_std": float(diff.std()),
            "separation": float(value / diff.std()) if diff.std() > 0 else None,
        }
        rows[v] = row
    result = {
        "command": "python benchmarks/segfeat_frechet_choice.py"
        + (f" --n {args.n} --boot {args.boot}" if args.n != 50 else ""),
        "date": time.strftime("%Y-%m-%d"),
        "segmenter": str(SEG.relative_to(REPO)),
        "seeds_a": f"{seeds_a[0]}-{seeds_a[-1]}",
        "seeds_b": f"{seeds_b[0]}-{seeds_b[-1]}",
        "torch": torch.__version__,
        "wall_s": round(time.time() - t0, 1),
        "loadavg_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "note": "shared 2-core machine; timing is not the point of this study",
        "variants": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# segfeat_frechet: which features ({args.n} scenes per set, {args.boot} bootstrap resamples)",
        "",
        f"`{result['command']}` · {result['date']} · segmenter {result['segmenter']} at 128x256 · "
        f"A = seeds {result['seeds_a']}, B = seeds {result['seeds_b']}",
        "",
        "",
    ]
    keys = [k for k in next(iter(rows.values())) if k not in ("dims", "vectors_per_set")]
    lines[-1] = "| features | dims | vectors/set | " + " | ".join(keys) + " |"
    lines.append("| --- | ---: | ---: | " + " | ".join("---:" for _ in keys) + " |")
    for v, row in rows.items():
        cells = [f"{row[k]['value']:.3f} ± {row[k]['bootstrap_std']:.3f}" for k in keys]
        lines.append(f"| {v} | {row['dims']} | {row['vectors_per_set']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "value ± the standard deviation over bootstrap resamples of the scenes (the same resamples for every "
        "column, so the paired difference's spread is that of the difference itself).",
        "",
        CHOICE,
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
