"""A SPADE VAE model's style: its encoder loaded from the weights file, and an image's style latent.

The encoder's weights travel in the generator's weights file under ``netE.`` (see ``cityserve.models.spade``).
The latent of an image is the encoder's mean ``mu``: deterministic, where the official test-time path
samples ``mu + exp(logvar / 2) * eps`` and the same image renders differently each time.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

from ..checkpoints import load_weights, safe_load
from ..errors import CheckpointError, ConfigError
from .registry import config_from_card
from .spade import ENCODER_PREFIX, ConvEncoder
from .spectral_norm import to_inference


def encoder_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``netE.``-prefixed keys of a cityserve SPADE weights file, prefix removed."""
    n = len(ENCODER_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(ENCODER_PREFIX)}


def has_encoder(card) -> bool:
    return bool(card.extra.get("encoder"))


def load_encoder(card, inference: bool = True) -> ConvEncoder:
    """The card's VAE encoder (weights sha256-verified), eval mode; inference form if asked."""
    if card.arch != "spade":
        raise ConfigError(f"{card.name} is a {card.arch} model; only SPADE VAE models have a style encoder")
    cfg = config_from_card(card)
    if not cfg.use_vae:
        raise ConfigError(f"model {card.name!r} is not a VAE model (use_vae false): it takes no style image")
    sd = encoder_state_dict(load_weights(card))
    if not sd:
        raise ConfigError(
            f"model {card.name!r} has no encoder weights (netE.* keys); re-import it with --netE "
            f"to render with a style image"
        )
    enc = ConvEncoder(cfg)
    try:
        enc.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise CheckpointError(f"encoder weights in {card.weights_path} do not fit the card's config: {first}") from None
    enc.eval()
    return to_inference(enc) if inference else enc


def style_tensor(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> [1,3,height,width] in [-1,1], resized (bicubic) as SPADE's image loader does."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"style image must be RGB uint8 [H,W,3], got {img.dtype} {tuple(img.shape)}")
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255.0)
    return ((t - 0.5) / 0.5)[None]


def encode_style(
    encoder: ConvEncoder, image: np.ndarray, height: int, width: int, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The style latent of an RGB image: the encoder's ``mu`` (deterministic; the official test-time
    path samples ``mu + exp(logvar / 2) * eps``, which makes the same image render differently)."""
    x = style_tensor(image, height, width).to(device)
    encoder = encoder.to(device)
    with torch.inference_mode():
        mu, _ = encoder(x)
    return mu.float().cpu().numpy()


def style_latent(card, image: np.ndarray, device: Optional[str] = None) -> np.ndarray:
    """z [1, z_dim] of an RGB image through the card's encoder: its mean, deterministic."""
    return encode_style(load_encoder(card), image, card.height, card.width, device=device or "cpu")


def read_latent(path, z_dim: int) -> np.ndarray:
    """A saved latent (.npy without pickles, or a .pt tensor loaded with weights_only) -> float32 [1, z_dim]."""
    p = str(path)
    if p.endswith(".npy"):
        try:
            z = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"latent {p}: not a readable .npy array ({str(e).splitlines()[0][:120]})") from None
    else:
        z = safe_load(p)
        if not isinstance(z, torch.Tensor):
            raise ConfigError(f"latent {p}: holds a {type(z).__name__}, not a tensor")
        z = z.detach().float().numpy()
    z = np.asarray(z, dtype=np.float32)
    if z.size != z_dim:
        raise ConfigError(f"latent {p}: has {z.size} values of shape {tuple(z.shape)}; the model takes z_dim {z_dim}")
    return z.reshape(1, z_dim)
