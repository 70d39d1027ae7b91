"""Why the demo SPADE is 128x256 with 1x1 SPADE norms: GFLOPs and parameters per render.

    .venv/bin/python models/demo/spade_cost.py > models/demo/spade_cost.md

SPADE's normalization MLP has 128 hidden channels at every resolution (the official architecture),
so its cost barely shrinks with ngf; the kernel size of those MLP convs (``norm_G`` ...3x3 / ...1x1)
and the resolution decide it. FLOPs are counted by ``cityserve.bench.flops.count_flops``.
"""
import torch

from cityserve.bench.flops import count_flops
from cityserve.models.spade import SPADEGenerator
from cityserve.training.spade_trainer import spade_config_for

torch.set_num_threads(1)
print("| size | norm_G | ngf | parameters (M) | GFLOPs per render |\n| --- | --- | ---: | ---: | ---: |")
for size in ((128, 256), (256, 512)):
    for norm in ("spectralspadebatch3x3", "spectralspadebatch1x1"):
        for ngf in (8, 16):
            cfg = spade_config_for("cityscapes", size, ngf=ngf, num_upsampling_layers="normal", norm_G=norm)
            g = SPADEGenerator(cfg).eval()
            n = sum(p.numel() for p in g.parameters())
            with torch.no_grad():
                f = count_flops(g, [torch.zeros(1, cfg.semantic_nc, *size)])
            print(f"| {size[0]}x{size[1]} | {norm} | {ngf} | {n / 1e6:.2f} | {f / 1e9:.1f} |")
