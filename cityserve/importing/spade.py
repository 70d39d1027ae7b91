"""Import NVlabs SPADE ``latest_net_G.pth`` (+ ``latest_net_E.pth``) as they are: weights + model card.

The official files are plain state dicts. What the tensors tell is read from them and never asked for:
ngf (``head_0`` width / 16), the number of input channels (``head_0.norm_0.mlp_shared.0``), VAE or not
(``fc`` is Linear for VAE generators), 'most' upsampling (``up_4``), spectral vs plain convs, batch vs
instance param-free norm, the SPADE kernel size, z_dim, the encoder's norm. What they cannot tell comes
from the user (label set, output size, 'normal' vs 'more' for non-VAE generators) and is checked against
them; a flag the tensors contradict is refused with a one-line error naming the flag and the tensor.

How the input channels split into labels / dontcare / instance edge: for the built-in label sets the
official dataset options fix ``label_nc`` (Cityscapes 35, ADE20K 150, COCO-Stuff 182) and the dontcare
channel (ADE20K and COCO-Stuff have one), so the instance-edge channel is whatever is left (0 or 1).
For a user's label set, ``--dontcare`` and ``--no-instance`` say it, and the set's ids must fit.

The written weights file holds the official netG keys unchanged and, for VAE models imported with
``--netE``, the official netE keys under the prefix ``netE.`` (see ``cityserve.models.spade``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch

from ..cards import ModelCard, command_line, environment, now_iso, sha256_file
from ..checkpoints import check_finite, load_strict, safe_load, save_checkpoint, state_dict_from
from ..errors import CheckpointError, ConfigError
from ..labels import BUILTIN_NAMES, get_label_set
from ..models.spade import ENCODER_PREFIX, UPSAMPLING_LAYERS, ConvEncoder, SPADEConfig, SPADEGenerator

OFFICIAL_REPO = "NVlabs/SPADE"


@dataclasses.dataclass(frozen=True)
class OfficialDefaults:
    """What the official dataset modes (``--dataset_mode``) set for a built-in label set."""

    label_nc: int
    contain_dontcare_label: bool
    no_instance: bool
    num_upsampling_layers: str


OFFICIAL = {
    "cityscapes": OfficialDefaults(35, False, False, "more"),  # CityscapesDataset sets 'more'
    "ade20k": OfficialDefaults(150, True, True, "normal"),
    "coco-stuff": OfficialDefaults(182, True, False, "normal"),
}


@dataclasses.dataclass
class Inferred:
    """What the netG tensors say about the generator."""

    ngf: int
    semantic_nc: int
    use_vae: bool
    z_dim: Optional[int]
    fc_out: int
    most: bool
    norm_G: str


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> str:
    return f"{key} {list(sd[key].shape)}"


def _weight(sd: Mapping[str, torch.Tensor], stem: str) -> Optional[str]:
    """The key of a (possibly spectral-normed) weight: ``stem.weight`` or ``stem.weight_orig``."""
    for key in (f"{stem}.weight_orig", f"{stem}.weight"):
        if key in sd:
            return key
    return None


def infer_generator(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Inferred:
    """Read the generator's structure from an official netG state dict."""
    need = ["fc.weight", "head_0.norm_0.mlp_shared.0.weight", "head_0.norm_0.mlp_gamma.weight", "conv_img.weight"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a SPADE generator (netG): no {', '.join(missing)}")
    fc = sd["fc.weight"]
    shared = sd["head_0.norm_0.mlp_shared.0.weight"]
    width = int(sd["head_0.norm_0.mlp_gamma.weight"].shape[0])
    if width % 16 or shared.ndim != 4:
        raise CheckpointError(
            f"checkpoint {path}: {_shape(sd, 'head_0.norm_0.mlp_gamma.weight')} is not 16*ngf wide; "
            f"not a SPADE generator"
        )
    ngf, semantic_nc = width // 16, int(shared.shape[1])
    if fc.ndim == 2:
        use_vae, z_dim = True, int(fc.shape[1])
    elif fc.ndim == 4:
        use_vae, z_dim = False, None
        if int(fc.shape[1]) != semantic_nc or int(fc.shape[0]) != width:
            raise CheckpointError(
                f"checkpoint {path}: {_shape(sd, 'fc.weight')} does not match "
                f"{_shape(sd, 'head_0.norm_0.mlp_shared.0.weight')}"
            )
    else:
        raise CheckpointError(f"checkpoint {path}: {_shape(sd, 'fc.weight')} is neither a conv nor a Linear weight")
    conv = _weight(sd, "head_0.conv_0")
    if conv is None:
        raise CheckpointError(f"checkpoint {path} is not a SPADE generator: no head_0.conv_0 weight")
    spectral = conv.endswith("_orig")
    norm = "syncbatch" if "head_0.norm_0.param_free_norm.running_mean" in sd else "instance"
    ks = int(shared.shape[-1])
    norm_G = f"{'spectral' if spectral else ''}spade{norm}{ks}x{ks}"
    most = any(k.startswith("up_4.") for k in sd)
    return Inferred(
        ngf=ngf,
        semantic_nc=semantic_nc,
        use_vae=use_vae,
        z_dim=z_dim,
        fc_out=int(fc.shape[0]),
        most=most,
        norm_G=norm_G,
    )


def split_channels(
    semantic_nc: int, ls, builtin: Optional[str], dontcare: bool, no_instance: bool, tensor: str
) -> tuple[int, bool, bool]:
    """(label_nc, contain_dontcare_label, no_instance) for ``semantic_nc`` input channels."""
    if builtin is not None:
        d = OFFICIAL[builtin]
        has_dc = d.contain_dontcare_label or dontcare
        rest = semantic_nc - d.label_nc - int(has_dc)
        base = f"{d.label_nc} {builtin} label channels" + (" + 1 dontcare" if has_dc else "")
        if rest < 0 or rest > 1:
            hint = (
                " (drop --dontcare?)"
                if dontcare and rest == -1
                else (" (add --dontcare?)" if rest == 2 else " (is --label-set right?)")
            )
            flag = f"--label-set {builtin}" + (" --dontcare" if dontcare else "")
            raise ConfigError(
                f"{flag} contradicts {tensor}: {semantic_nc} input channels, but official {builtin} "
                f"models have {base} (+ 1 instance edge){hint}"
            )
        if rest == 1 and no_instance:
            raise ConfigError(
                f"--no-instance contradicts {tensor}: {semantic_nc} input channels = {base} + 1, "
                f"the instance-edge channel (drop --no-instance)"
            )
        return d.label_nc, has_dc, rest == 0
    # a user's label set: the flags say how the channels split; the set's ids must all have a channel
    use_instance = not no_instance and semantic_nc - int(dontcare) - 1 >= ls.num_ids
    num_classes = semantic_nc - int(use_instance)
    label_nc = num_classes - int(dontcare)
    if num_classes < ls.num_ids or label_nc < 1:
        flags = " ".join(f for f, on in (("--dontcare", dontcare), ("--no-instance", no_instance)) if on)
        raise ConfigError(
            f"label set {ls.name!r} has {ls.num_ids} ids but {tensor} gives only {num_classes} label "
            f"channels{' with ' + flags if flags else ''}: wrong --label-set?"
        )
    return label_nc, dontcare, not use_instance


def _config_for(size: tuple[int, int], upsampling: str, **kw: Any):
    """``--size HxW``: crop_size = W, aspect_ratio = W / H (as the official options)."""
    h, w = size
    return SPADEConfig(num_upsampling_layers=upsampling, crop_size=w, aspect_ratio=w / h, **kw)


def choose_upsampling(inf: Inferred, sd, size: tuple[int, int], flag: Optional[str], default: str) -> tuple[str, str]:
    """(num_upsampling_layers, how it was decided)."""
    if inf.most:
        if flag not in (None, "most"):
            raise ConfigError(
                f"--upsampling {flag} contradicts the checkpoint: it has up_4.* blocks, "
                f"which only 'most' generators have"
            )
        return "most", "inferred from up_4.*"
    if flag == "most":
        raise ConfigError("--upsampling most contradicts the checkpoint: it has no up_4.* blocks")
    if inf.use_vae:
        # fc is Linear(z_dim -> 16*ngf*sh*sw): the first layer's size tells normal from more
        h, w = size
        fits = []
        for mode in ("normal", "more"):
            n = UPSAMPLING_LAYERS[mode]
            sw = w // 2**n
            sh = round(sw / (w / h))
            if 16 * inf.ngf * sh * sw == inf.fc_out:
                fits.append(mode)
        if flag is not None:
            if flag not in fits:
                raise ConfigError(
                    f"--upsampling {flag} with --size {h}x{w} contradicts {_shape(sd, 'fc.weight')}: "
                    f"its {inf.fc_out} outputs are 16*ngf*sh*sw for "
                    f"{' or '.join(fits) if fits else 'neither normal nor more at this size'}"
                )
            return flag, "--upsampling"
        if not fits:
            raise ConfigError(
                f"--size {h}x{w} contradicts {_shape(sd, 'fc.weight')}: its {inf.fc_out} outputs "
                f"are not 16*ngf*sh*sw (ngf {inf.ngf}) for 'normal' or 'more' upsampling at that size"
            )
        return (default if default in fits else fits[0]), "inferred from fc.weight"
    if flag is not None:
        return flag, "--upsampling"
    return default, "default; pass --upsampling if the model was trained with another"


def infer_encoder(esd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> tuple[str, int, int, bool]:
    """(norm_E, ndf, z_dim, has_layer6) of an official netE state dict."""
    if "fc_mu.weight" not in esd or "fc_var.weight" not in esd:
        raise CheckpointError(f"checkpoint {path} is not a SPADE encoder (netE): no fc_mu / fc_var")
    stem = "layer1.0" if _weight(esd, "layer1.0") else "layer1"
    key = _weight(esd, stem)
    if key is None:
        raise CheckpointError(f"checkpoint {path} is not a SPADE encoder (netE): no layer1 conv weight")
    spectral = key.endswith("_orig")
    if stem == "layer1":
        sub = "none"
    else:
        sub = "batch" if "layer1.1.running_mean" in esd else "instance"
    norm_E = ("spectral" if spectral else "") + sub
    return norm_E, int(esd[key].shape[0]), int(esd["fc_mu.weight"].shape[0]), any(k.startswith("layer6.") for k in esd)


def _label_set(spec: Any):
    """(LabelSet, built-in name or None, what the card stores)."""
    ls = get_label_set(spec)
    if ls.name in BUILTIN_NAMES and ls == get_label_set(ls.name):
        return ls, ls.name, ls.name
    return ls, None, ls.to_dict()


def import_spade(
    netG: str | os.PathLike,
    label_set: Any,
    size: tuple[int, int],
    out_dir: str | os.PathLike,
    netE: Optional[str | os.PathLike] = None,
    upsampling: Optional[str] = None,
    no_instance: bool = False,
    dontcare: bool = False,
    vae: bool = False,
    name: Optional[str] = None,
    log=None,
) -> Path:
    """Check the official file(s) against the options, then write ``NAME.pt`` + ``NAME.card.json`` into
    ``out_dir``; returns the card path. ``log`` (default: stderr) receives what was inferred."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if upsampling is not None and upsampling not in UPSAMPLING_LAYERS:
        raise ConfigError(f"--upsampling must be one of {', '.join(UPSAMPLING_LAYERS)}, not {upsampling!r}")
    h, w = size
    if h < 1 or w < 1:
        raise ConfigError(f"--size {h}x{w}: height and width must be positive")
    ls, builtin, card_label_set = _label_set(label_set)

    sd = state_dict_from(safe_load(netG), netG)
    inf = infer_generator(sd, netG)
    if vae and not inf.use_vae:
        raise ConfigError(
            f"--vae contradicts {_shape(sd, 'fc.weight')} of {netG}: a VAE generator's fc is "
            f"Linear(z_dim, 16*ngf*sh*sw), this one is a conv on the label map"
        )
    if netE is not None and not inf.use_vae:
        raise ConfigError(
            f"--netE given, but {netG} is not a VAE generator ({_shape(sd, 'fc.weight')} is a conv "
            f"on the label map): it takes no style latent"
        )
    tensor = _shape(sd, "head_0.norm_0.mlp_shared.0.weight")
    label_nc, has_dc, no_inst = split_channels(inf.semantic_nc, ls, builtin, dontcare, no_instance, tensor)
    default_up = OFFICIAL[builtin].num_upsampling_layers if builtin else "normal"
    cfg_kw = dict(
        label_nc=label_nc,
        contain_dontcare_label=has_dc,
        no_instance=no_inst,
        ngf=inf.ngf,
        use_vae=inf.use_vae,
        z_dim=inf.z_dim or 256,
        norm_G=inf.norm_G,
    )
    up, up_how = choose_upsampling(inf, sd, size, upsampling, default_up)

    esd = None
    if netE is not None:
        esd = state_dict_from(safe_load(netE), netE)
        norm_E, ndf, ez, layer6 = infer_encoder(esd, netE)
        if ndf != inf.ngf:
            raise CheckpointError(
                f"encoder {netE} has ngf {ndf} (layer1 width) but generator {netG} has ngf {inf.ngf}: "
                f"not the same model"
            )
        if ez != inf.z_dim:
            raise CheckpointError(
                f"encoder {netE} outputs z_dim {ez} ({_shape(esd, 'fc_mu.weight')}) but generator "
                f"{netG} takes {inf.z_dim} ({_shape(sd, 'fc.weight')})"
            )
        if layer6 != (w >= 256):
            raise ConfigError(
                f"--size {h}x{w} contradicts encoder {netE}: official encoders have layer6 exactly when "
                f"crop_size (the width) >= 256, and this one {'has' if layer6 else 'lacks'} it"
            )
        cfg_kw["norm_E"] = norm_E
    try:
        cfg = _config_for(size, up, **cfg_kw)
    except ConfigError as e:
        raise ConfigError(f"--size {h}x{w}: {e}") from None
    if (cfg.height, cfg.width) != (h, w):
        n = cfg.n_up
        raise ConfigError(
            f"--size {h}x{w} is not a size SPADE renders with {up!r} upsampling ({n} doublings): "
            f"sw = {w} // 2**{n} = {cfg.sw}, sh = round(sw / aspect) = {cfg.sh} give "
            f"{cfg.height}x{cfg.width}; use a width divisible by {2**n} and height = width / aspect"
        )

    gen = SPADEGenerator(cfg)
    load_strict(
        gen,
        sd,
        netG,
        f"a SPADE generator with {cfg.num_upsampling_layers!r} upsampling, ngf {cfg.ngf}, "
        f"{cfg.semantic_nc} input channels",
    )
    check_finite(sd, netG)
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    provenance = {
        "imported_from": str(Path(netG).resolve()),
        "source_sha256": sha256_file(netG),
        "official_repo": OFFICIAL_REPO,
        "command": command_line(),
        "created": now_iso(),
        "environment": environment(),
    }
    extra: dict[str, Any] = {
        "inferred": {
            "ngf": cfg.ngf,
            "semantic_nc": cfg.semantic_nc,
            "use_vae": cfg.use_vae,
            "norm_G": cfg.norm_G,
            "num_upsampling_layers": up_how,
        }
    }
    if esd is not None:
        enc = ConvEncoder(cfg)
        load_strict(enc, esd, netE, f"a SPADE encoder with ngf {cfg.ngf}, norm_E {cfg.norm_E!r}")
        check_finite(esd, netE)
        weights.update({ENCODER_PREFIX + k: (v.float() if v.is_floating_point() else v) for k, v in esd.items()})
        provenance["encoder_imported_from"] = str(Path(netE).resolve())
        provenance["encoder_source_sha256"] = sha256_file(netE)
        extra["encoder"] = {"prefix": ENCODER_PREFIX, "norm_E": cfg.norm_E}
    elif cfg.use_vae:
        log(
            "note: VAE generator imported without --netE: it renders from random or given latents, "
            "not from a style image"
        )

    name = name or f"spade_{ls.name}_{h}x{w}{'_vae' if cfg.use_vae else ''}"
    card = ModelCard(
        name=name,
        kind="generator",
        arch="spade",
        config=dataclasses.asdict(cfg),
        label_set=card_label_set,
        height=h,
        width=w,
        provenance=provenance,
        extra=extra,
    )
    log(
        f"SPADE generator: ngf {cfg.ngf}, {cfg.label_nc} labels{' + dontcare' if has_dc else ''}"
        f"{'' if no_inst else ' + instance edges'}, upsampling {up!r} ({up_how}), "
        f"{'VAE z_dim ' + str(cfg.z_dim) if cfg.use_vae else 'no VAE'}, {cfg.norm_G}"
    )
    return save_checkpoint(card, weights, out_dir, stem=name)
