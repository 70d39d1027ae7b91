"""The SPADE trainer's named presets (``train/spade.py --preset NAME``): published settings of SPADE and
OASIS, the Hong Kong street-scene setup, and the recipes of this project's demo models."""

from __future__ import annotations

from .entry import Preset
from .spade_trainer import SPADETrainConfig, spade_config_for


def _preset(label_set: str, size: tuple[int, int], train: SPADETrainConfig, batch_size: int = 1, epochs=None, **gen):
    return Preset(spade_config_for(label_set, size, **gen), train, size, batch_size, epochs, label_set=label_set)


PRESETS: dict[str, Preset] = {
    # The Hong Kong street-scene setup: Adam lr 2e-4 for both networks (no TTUR), batch 1, 100 epochs at
    # a constant rate, Xavier init; SPADE's generator at its Cityscapes resolution.
    "hongkong": _preset(
        "cityscapes",
        (256, 512),
        SPADETrainConfig(lr=2e-4, no_TTUR=True, beta1=0.0, beta2=0.9, niter_decay=0, init_type="xavier"),
        epochs=100,
        ngf=64,
        num_upsampling_layers="more",
    ),
    # SPADE's published Cityscapes run: 256x512, 35 label channels + instance edges, upsampling 'more',
    # batch 16, niter 100 + niter_decay 100 (200 epochs), TTUR (G 1e-4, D 4e-4, Adam (0, 0.9)),
    # lambda_feat 10, lambda_vgg 10, multiscale D (2 x 4 layers, spectral instance norm), Xavier init.
    "cityscapes": _preset(
        "cityscapes",
        (256, 512),
        SPADETrainConfig(lr=2e-4, niter_decay=100),
        batch_size=16,
        epochs=200,
        ngf=64,
        num_upsampling_layers="more",
        label_nc=35,
        contain_dontcare_label=False,
    ),
    # SPADE's published ADE20K run: 256x256, 150 classes + dontcare, no instances, batch 32,
    # niter 100 + niter_decay 100, TTUR.
    "ade20k": _preset(
        "ade20k",
        (256, 256),
        SPADETrainConfig(lr=2e-4, niter_decay=100),
        batch_size=32,
        epochs=200,
        ngf=64,
        num_upsampling_layers="normal",
        no_instance=True,
    ),
    # OASIS's published setup (Cityscapes): the N+1 U-Net discriminator, LabelMix 10, 3D noise 64, EMA,
    # G 1e-4 / D 4e-4, Adam (0, 0.999), 200 epochs at batch 20 (here per process).
    "oasis": _preset(
        "cityscapes",
        (256, 512),
        SPADETrainConfig(objective="oasis", beta2=0.999, ndf=64, ema_decay=0.9999),
        batch_size=20,
        epochs=200,
        ngf=64,
        noise_dim=64,
        norm_G="spectralspadesyncbatch3x3",
    ),
    # The shipped demo generator (models/demo/spade-demo), on synthetic scenes on a 2-core CPU: the OASIS
    # objective with CPU widths (ngf 16, 1x1 SPADE norms of 32 hidden channels, noise 16, discriminator
    # ndf 16), EMA 0.999, batch 1, trained at 128x256 and then fine-tuned at 256x512 (--size 256x512
    # --init-from the 128x256 card --init-D its training state); the commands are in models/demo/README.md.
    "demo": _preset(
        "cityscapes",
        (128, 256),
        SPADETrainConfig(objective="oasis", beta2=0.999, ndf=16, num_res_blocks_D=6, ema_decay=0.999),
        ngf=16,
        nhidden=32,
        noise_dim=16,
        norm_G="spectralspadeinstance1x1",
    ),
    # The previous demo recipe (SPADE's hinge + feature matching, no VGG file here), for the comparison:
    # ngf 8, 1x1 batch-norm SPADE norms of 32 hidden channels, multiscale D 2 x 3 layers of ndf 16.
    "demo-spade": _preset(
        "cityscapes",
        (256, 512),
        SPADETrainConfig(lr=2e-4, ndf=16, n_layers_D=3, num_D=2),
        ngf=8,
        nhidden=32,
        norm_G="spectralspadebatch1x1",
    ),
    # The smallest sensible configuration: for tests and smoke runs.
    "tiny": _preset("cityscapes", (32, 64), SPADETrainConfig(ndf=4, n_layers_D=2, num_D=2), epochs=1, ngf=2),
}
