"""SPADE / GauGAN (NVlabs/SPADE): the generator, its residual blocks, the SPADE norm, the VAE encoder.

Module and parameter names follow the official ``models/networks`` code exactly, so the official
``latest_net_G.pth`` / ``latest_net_E.pth`` state dicts load as they are (``fc``, ``head_0``,
``G_middle_0/1``, ``up_0..up_3`` (+ ``up_4`` for 'most'), ``conv_img``; inside a block ``conv_0/1/s``
and ``norm_0/1/s``; inside SPADE ``param_free_norm``, ``mlp_shared.0``, ``mlp_gamma``, ``mlp_beta``;
the encoder's ``layerN.0`` conv (+ ``layerN.1`` norm), ``fc_mu``, ``fc_var``).

What the reproduction depends on (all as the official code does it): the full-resolution label map is
resized with *nearest* to every layer; ``x_norm * (1 + gamma) + beta``; batch norm without affine
parameters, eps 1e-5, running statistics in eval (SPADE's synchronized batch norm is plain batch norm on
one device); ReLU in ``mlp_shared``; leaky ReLU 0.2 in the blocks and before ``conv_img``; a learned
1x1 shortcut only where a block changes the channel count; spectral norm with the stored ``u``/``v``
(no power iteration in eval, sigma = u . (W v)).

The inference form (``cityserve.models.spectral_norm.to_inference``) folds each spectral norm into a
plain weight ``W / sigma`` and leaves batch norm in eval mode, so exporters see conv ->
BatchNormalization they can fuse. Outputs are unchanged.

VAE models: the encoder is not part of the generator module. Its weights travel in the *same* weights
file as the generator, under the prefix ``netE.`` (the official netE keys after that prefix);
``SPADEGenerator`` ignores ``netE.*`` keys when loading, so ``build_from_card`` keeps loading strictly,
and ``cityserve.models.spade_style.load_encoder(card)`` builds the ``ConvEncoder`` from them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..options import option
from .registry import Family, RenderIO, register_family
from .spectral_norm import to_inference

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}
ENCODER_PREFIX = "netE."
_NORM_G = re.compile(r"^(spectral)?spade(instance|batch|syncbatch)(\d+)x\d+$")
_NORM_E = re.compile(r"^(spectral)?(instance|batch|syncbatch|sync_batch|none|)$")


@dataclasses.dataclass
class SPADEConfig:
    """SPADE's options, under the official option names (defaults are the official BaseOptions ones).

    The generator's input has ``semantic_nc = label_nc + contain_dontcare_label + (not no_instance)``
    channels: the one-hot labels, the dontcare channel, the instance-edge map. The output is
    ``height x width`` = ``(sh, sw) * 2**n_up`` with ``sw = crop_size // 2**n_up`` and
    ``sh = round(sw / aspect_ratio)``.
    """

    label_nc: int = option(182, "label channels (default: the label set's ids)")
    contain_dontcare_label: bool = option(False, cli=False)  # from the label set
    no_instance: bool = option(False, "no instance-edge channel")
    ngf: int = option(64, "generator width")
    num_upsampling_layers: str = option("normal", "", cli={"choices": tuple(UPSAMPLING_LAYERS)})
    crop_size: int = option(256, cli=False)  # from the training size
    aspect_ratio: float = option(1.0, cli=False)  # from the training size
    use_vae: bool = option(False, "train with the style encoder (VAE + KL loss)")
    z_dim: int = option(256, "VAE latent length")
    norm_G: str = option(
        "spectralspadesyncbatch3x3", "e.g. spectralspadesyncbatch3x3 (SPADE), spectralspadeinstance1x1 (the demo)"
    )
    norm_E: str = option("spectralinstance", "VAE encoder norm")
    output_nc: int = option(3, cli=False)
    nhidden: int = option(128, "hidden width of each SPADE norm (official 128; smaller trains on a CPU)")
    noise_dim: int = option(0, "OASIS 3D noise: a N(0,1) vector per image concatenated to the label map (OASIS 64)")
    extra_condition_nc: int = option(0, cli=False)  # depth-aware photo stage: 1 (the depth map every norm reads)

    def __post_init__(self) -> None:
        if self.num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ConfigError(
                f"num_upsampling_layers must be one of {', '.join(UPSAMPLING_LAYERS)}, "
                f"not {self.num_upsampling_layers!r}"
            )
        if not _NORM_G.match(self.norm_G):
            raise ConfigError(
                f"norm_G {self.norm_G!r} is not a SPADE norm such as 'spectralspadesyncbatch3x3' or 'spadeinstance3x3'"
            )
        if not _NORM_E.match(self.norm_E):
            raise ConfigError(f"norm_E {self.norm_E!r} is not one of [spectral]instance|batch|syncbatch|none")
        for name in ("label_nc", "ngf", "crop_size", "z_dim", "output_nc"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SPADE {name} must be >= 1, not {getattr(self, name)}")
        if self.noise_dim < 0:
            raise ConfigError(f"SPADE noise_dim must be >= 0, not {self.noise_dim}")
        if self.extra_condition_nc < 0:
            raise ConfigError(f"SPADE extra_condition_nc must be >= 0, not {self.extra_condition_nc}")
        if self.noise_dim and self.use_vae:
            raise ConfigError("a SPADE generator takes its latent from the VAE encoder or as 3D noise, not both")
        if self.aspect_ratio <= 0:
            raise ConfigError(f"SPADE aspect_ratio must be > 0, not {self.aspect_ratio}")
        if self.num_upsampling_layers == "most" and self.ngf < 2:
            raise ConfigError("num_upsampling_layers 'most' needs ngf >= 2 (its last block has ngf // 2 channels)")
        if self.sw < 1 or self.sh < 1:
            raise ConfigError(
                f"crop_size {self.crop_size} / aspect_ratio {self.aspect_ratio} is too small for "
                f"{self.n_up} upsampling layers ({self.num_upsampling_layers!r}): the first layer "
                f"would be {self.sh}x{self.sw}"
            )

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def semantic_nc(self) -> int:
        """Generator input channels: labels + dontcare + instance edges."""
        return self.label_nc + int(self.contain_dontcare_label) + int(not self.no_instance)

    @property
    def input_nc(self) -> int:
        """Channels of the generator's input map: ``semantic_nc`` plus the extra condition (a depth-aware
        photo stage's depth map), concatenated after them."""
        return self.semantic_nc + self.extra_condition_nc

    @property
    def cond_nc(self) -> int:
        """Channels of the map every SPADE norm (and, without VAE, ``fc``) reads: ``input_nc`` plus the
        3D noise channels (OASIS) where used."""
        return self.input_nc + self.noise_dim

    @property
    def depth_aware(self) -> bool:
        """A stage of the two-stage depth-aware SPADE: label -> depth (1 output channel) or label + depth
        -> photo (an extra condition channel); neither fits the plain render graph."""
        return self.output_nc != 3 or self.extra_condition_nc > 0

    @property
    def latent_dim(self) -> int:
        """Length of the per-image latent ``z`` the generator takes: the VAE's ``z_dim``, the 3D noise's
        ``noise_dim``, or 0."""
        return self.z_dim if self.use_vae else self.noise_dim

    @property
    def num_classes(self) -> int:
        """Label ids the generator accepts (one-hot channels, dontcare included)."""
        return self.label_nc + int(self.contain_dontcare_label)

    @property
    def n_up(self) -> int:
        return UPSAMPLING_LAYERS[self.num_upsampling_layers]

    @property
    def sw(self) -> int:
        return self.crop_size // (2**self.n_up)

    @property
    def sh(self) -> int:
        return round(self.sw / self.aspect_ratio)

    @property
    def height(self) -> int:
        return self.sh * 2**self.n_up

    @property
    def width(self) -> int:
        return self.sw * 2**self.n_up

    @property
    def spectral_G(self) -> bool:
        return self.norm_G.startswith("spectral")

    @property
    def param_free_norm(self) -> str:
        return _NORM_G.match(self.norm_G).group(2)

    @property
    def spade_kernel(self) -> int:
        return int(_NORM_G.match(self.norm_G).group(3))


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Official SPADE wraps convs in torch's spectral norm: weight_orig / weight_u / weight_v."""
    return nn.utils.spectral_norm(module) if enabled else module


class SPADE(nn.Module):
    """Spatially-adaptive normalization: ``param_free_norm(x) * (1 + gamma(seg)) + beta(seg)``."""

    def __init__(self, norm_type: str, norm_nc: int, label_nc: int, ks: int = 3, nhidden: int = 128):
        super().__init__()
        if norm_type == "instance":
            self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        elif norm_type in ("batch", "syncbatch"):
            # synchronized batch norm == batch norm on one device; eval uses running stats, eps 1e-5
            self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        else:
            raise ConfigError(f"{norm_type!r} is not a SPADE param-free norm (instance, batch, syncbatch)")
        pw = ks // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, kernel_size=ks, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, kernel_size=ks, padding=pw)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Two SPADE -> leaky ReLU 0.2 -> 3x3 conv stages plus a shortcut (learned only if fin != fout)."""

    def __init__(self, fin: int, fout: int, cfg: SPADEConfig):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        sn = cfg.spectral_G
        self.conv_0 = _sn(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1), sn)
        self.conv_1 = _sn(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1), sn)
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, kernel_size=1, bias=False), sn)
        norm, ks, nc = cfg.param_free_norm, cfg.spade_kernel, cfg.cond_nc
        self.norm_0 = SPADE(norm, fin, nc, ks, cfg.nhidden)
        self.norm_1 = SPADE(norm, fmiddle, nc, ks, cfg.nhidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(norm, fin, nc, ks, cfg.nhidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """``forward(input [B, input_nc, H, W], z=None) -> [B, output_nc, H, W]`` in [-1, 1].

    The depth-aware stages are this generator with other configs: ``output_nc=1`` predicts normalised
    log-depth from the labels; ``extra_condition_nc=1`` reads the labels with the depth map concatenated
    (``[one-hot, edges, depth]``), in ``fc`` and in every SPADE norm, as Sun, Fu and Huang's stage 2 does.

    Without VAE the label map, resized to ``sh x sw``, goes through the 3x3 conv ``fc``; with VAE
    ``fc`` is Linear(z_dim -> 16*ngf*sh*sw) of the latent (sampled from N(0, 1) when ``z`` is None).
    With ``noise_dim`` (OASIS's 3D noise) ``z`` [B, noise_dim] (sampled when None) is broadcast over
    the map and concatenated in front of the label channels, so ``fc`` and every SPADE norm see it and
    one label map gives a different photo per ``z``.
    """

    def __init__(self, cfg: SPADEConfig):
        super().__init__()
        self.cfg = cfg
        nf = cfg.ngf
        self.sw, self.sh = cfg.sw, cfg.sh
        if cfg.use_vae:
            self.fc = nn.Linear(cfg.z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(cfg.cond_nc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, cfg)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, cfg)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, cfg)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, cfg)
        final_nc = nf
        if cfg.num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(1 * nf, nf // 2, cfg)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, cfg.output_nc, 3, padding=1)

    @staticmethod
    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, input: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        seg = input
        cfg = self.cfg
        if cfg.use_vae:
            if z is None:
                z = torch.randn(input.shape[0], cfg.z_dim, dtype=input.dtype, device=input.device)
            # batch from z, not -1: ONNX export then knows the channel count the batch norms need
            x = self.fc(z.to(input.dtype)).view(z.shape[0], 16 * cfg.ngf, self.sh, self.sw)
        else:
            if cfg.noise_dim:
                if z is None:
                    z = torch.randn(input.shape[0], cfg.noise_dim, dtype=input.dtype, device=input.device)
                b, _, h, w = seg.shape
                seg = torch.cat(
                    [z.to(seg.dtype).reshape(b, cfg.noise_dim, 1, 1).expand(b, cfg.noise_dim, h, w), seg], 1
                )
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))
        return self.synthesize(x, seg)

    def synthesize(self, x: torch.Tensor, seg) -> torch.Tensor:
        """The residual trunk from ``fc``'s output to the image; every block reads ``seg`` (the full-size SPADE
        input here; an inference form's own per-block input where it replaced the blocks)."""
        cfg = self.cfg
        x = self.head_0(x, seg)
        x = self.up(x)
        x = self.G_middle_0(x, seg)
        if cfg.num_upsampling_layers in ("more", "most"):
            x = self.up(x)
        x = self.G_middle_1(x, seg)
        x = self.up(x)
        x = self.up_0(x, seg)
        x = self.up(x)
        x = self.up_1(x, seg)
        x = self.up(x)
        x = self.up_2(x, seg)
        x = self.up(x)
        x = self.up_3(x, seg)
        if cfg.num_upsampling_layers == "most":
            x = self.up(x)
            x = self.up_4(x, seg)
        x = self.conv_img(F.leaky_relu(x, 0.2))
        return torch.tanh(x)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # A VAE checkpoint carries its encoder as netE.* beside the generator keys (see load_encoder).
        for key in [k for k in state_dict if k.startswith(prefix + ENCODER_PREFIX)]:
            state_dict.pop(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class ConvEncoder(nn.Module):
    """SPADE's VAE image encoder: 6 (5 below crop 256) stride-2 3x3 convs -> (mu, logvar).

    Images are resized (bilinear) to 256x256 first, as the official code does (128x128 for the 5-layer
    encoder of crops below 256, where the official code fails). The official encoder's
    convs carry no bias when followed by a norm (``get_nonspade_norm_layer`` deletes it).
    """

    def __init__(self, cfg: SPADEConfig):
        super().__init__()
        self.cfg = cfg
        ndf = cfg.ngf
        m = _NORM_E.match(cfg.norm_E)
        spectral, sub = bool(m.group(1)), m.group(2)
        widths = [(3, ndf), (ndf, ndf * 2), (ndf * 2, ndf * 4), (ndf * 4, ndf * 8), (ndf * 8, ndf * 8)]
        if cfg.crop_size >= 256:
            widths.append((ndf * 8, ndf * 8))
        for i, (cin, cout) in enumerate(widths, start=1):
            setattr(self, f"layer{i}", self._layer(cin, cout, spectral, sub))
        self.n_layers = len(widths)
        s0 = 4
        self.fc_mu = nn.Linear(ndf * 8 * s0 * s0, cfg.z_dim)
        self.fc_var = nn.Linear(ndf * 8 * s0 * s0, cfg.z_dim)

    @staticmethod
    def _layer(cin: int, cout: int, spectral: bool, sub: str) -> nn.Module:
        conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=sub in ("none", ""))
        conv = _sn(conv, spectral)
        if sub in ("none", ""):
            return conv  # official: a bare (spectral) conv with bias, no nn.Sequential
        if sub == "instance":
            norm = nn.InstanceNorm2d(cout, affine=False)
        else:  # batch / syncbatch / sync_batch
            norm = nn.BatchNorm2d(cout, affine=True)
        return nn.Sequential(conv, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Official: always 256x256. Without layer6 (crop < 256) the official encoder ends at 8x8 and its
        # fc_mu does not fit (it cannot run); 128x128 keeps the 4x4 the fc layers expect.
        side = 256 if self.n_layers == 6 else 128
        if x.shape[2] != side or x.shape[3] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear")
        x = self.layer1(x)
        for i in range(2, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).reshape(x.shape[0], -1)
        return self.fc_mu(x), self.fc_var(x)


# ---- family registration ------------------------------------------------------------------------


def build_generator(cfg: SPADEConfig) -> SPADEGenerator:
    return SPADEGenerator(cfg)


def spade_render_io(cfg: SPADEConfig) -> RenderIO:
    if cfg.depth_aware:
        raise ConfigError(
            "a depth-aware SPADE stage (depth output or depth input) has its own graphs: "
            "export it with `cityserve export depth`, not as a label -> photo renderer"
        )
    return RenderIO(
        num_classes=cfg.num_classes,
        use_instance=not cfg.no_instance,
        z_dim=cfg.latent_dim,
        input_mode="onehot",
    )


register_family(
    Family(
        arch="spade",
        kind="generator",
        config_cls=SPADEConfig,
        build=build_generator,
        render_io=spade_render_io,
        to_inference=to_inference,
    )
)
