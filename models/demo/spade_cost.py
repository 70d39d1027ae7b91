"""What sizes the demo SPADE: parameters and GFLOPs per render by size, SPADE-norm kernel, hidden width, ngf.

    .venv/bin/python models/demo/spade_cost.py > models/demo/spade_cost.md

Every SPADE norm runs a small MLP on the label map at its block's resolution: a shared conv to ``nhidden``
channels (official: 128) and two convs back to the block's width for gamma and beta. At the last blocks'
full resolution that MLP, not the generator's width ``ngf``, is most of the cost, so the kernel size of
those convs (``norm_G`` ...3x3 / ...1x1) and ``nhidden`` decide it. FLOPs are counted by
``cityserve.bench.flops.count_flops``; the shipped demo is the 256x512 / 1x1 / nhidden 32 / ngf 8 row.
"""

import torch

from cityserve.bench.flops import count_flops
from cityserve.models.spade import SPADEGenerator
from cityserve.training.spade_trainer import spade_config_for

torch.set_num_threads(1)
print(
    "| size | norm_G | nhidden | ngf | parameters (M) | GFLOPs per render |\n| --- | --- | ---: | ---: | ---: | ---: |"
)
for size in ((128, 256), (256, 512)):
    for norm in ("spectralspadebatch3x3", "spectralspadebatch1x1"):
        for nhidden in (128, 32):
            for ngf in (8, 16):
                cfg = spade_config_for(
                    "cityscapes", size, ngf=ngf, num_upsampling_layers="normal", norm_G=norm, nhidden=nhidden
                )
                g = SPADEGenerator(cfg).eval()
                n = sum(p.numel() for p in g.parameters())
                with torch.no_grad():
                    f = count_flops(g, [torch.zeros(1, cfg.semantic_nc, *size)])
                print(f"| {size[0]}x{size[1]} | {norm} | {nhidden} | {ngf} | {n / 1e6:.2f} | {f / 1e9:.1f} |")
