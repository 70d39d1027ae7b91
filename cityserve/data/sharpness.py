"""Blurred-frame detection judged against the video itself, on a resolution-normalised image.

A fixed threshold on the variance of the Laplacian cannot work across videos: the score measures
texture as much as focus (a sharp highway frame of sky and asphalt scores 50-80 where a sharp city
street scores thousands), and it grows as frames shrink. So:

* ``sharpness`` is the variance of the Laplacian of Gaussian (sigma 1 px) of the grey frame area-resized
  to ``ANALYSIS_HEIGHT`` rows (width by aspect ratio): one physical scale (1/256 of the frame height),
  so the same view scores about the same from 360p to 1080p, within 15 % where the raw variance of the
  Laplacian moves by 1.5-3x (the Gaussian evens out how each resize factor softens edges). The stored
  frame is scored (e.g. 480x960); frames under 256 rows are scored as they are;
* ``RelativeBlurRule`` calls a frame blurred when its score is below ``ratio`` times its *reference*:
  the smaller of the medians of the ``window`` sampled frames before it and of the ``window`` after it
  (only one side at the ends of a video). Motion blur and defocus take most of a frame's Laplacian
  energy (a frame keeps a fraction of its neighbours' score), while neighbours 1-2 s apart share the
  scene's texture; the smaller side median keeps the sharp frames on either side of a cut from
  textured streets to open road. ``ratio`` means the same in every video. An optional absolute
  ``floor`` (off by default) also drops frames below it, for footage that is blurred throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError

ANALYSIS_HEIGHT = 256
LOG_SIGMA = 1.0


def sharpness(rgb: np.ndarray, analysis_height: int = ANALYSIS_HEIGHT) -> float:
    """Variance of the Laplacian of Gaussian (sigma ``LOG_SIGMA`` px) of the grey frame area-resized to
    ``analysis_height`` rows (smaller frames are scored at their own size: enlarging adds no detail)."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)
    h, w = g.shape
    if h > analysis_height:
        width = max(1, int(round(w * analysis_height / h)))
        g = cv2.resize(g, (width, analysis_height), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), LOG_SIGMA), cv2.CV_64F).var())


@dataclass
class BlurDecision:
    blurred: bool
    reference: float | None  # None: no neighbours (a one-frame video)
    ratio: float | None  # score / reference


@dataclass
class RelativeBlurRule:
    """See the module docstring. ``window``: sampled frames on each side; ``ratio``: fraction of the
    reference below which a frame is blurred; ``floor``: absolute minimum score (0 = none)."""

    ratio: float = 0.5
    window: int = 4
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ConfigError(f"blur ratio must be between 0 and 1, got {self.ratio}")
        if self.window < 1:
            raise ConfigError(f"blur window must be at least 1 frame, got {self.window}")
        if self.floor < 0:
            raise ConfigError(f"blur floor must be >= 0, got {self.floor}")

    def describe(self) -> str:
        text = (
            f"blurred when sharpness < {self.ratio:g} x reference; reference = the smaller of the medians of "
            f"the {self.window} sampled frames before and the {self.window} after (one side at the ends of a "
            f"video); sharpness = variance of the Laplacian of Gaussian (sigma {LOG_SIGMA:g}) of the grey frame "
            f"resized to {ANALYSIS_HEIGHT} rows"
        )
        return text + (f"; also blurred below {self.floor:g} (absolute floor)" if self.floor else "")

    def decide(self, scores: Sequence[float], i: int) -> BlurDecision:
        """Decision for frame ``i`` of one video's sampled frames (needs ``window`` frames after it, or
        the video's end)."""
        before = scores[max(0, i - self.window) : i]
        after = scores[i + 1 : i + 1 + self.window]
        medians = [float(np.median(side)) for side in (before, after) if len(side)]
        score = float(scores[i])
        below_floor = score < self.floor
        if not medians:
            return BlurDecision(below_floor, None, None)
        reference = min(medians)
        ratio = score / reference if reference > 0 else float("inf")
        return BlurDecision(below_floor or ratio < self.ratio, reference, ratio)

    def decide_all(self, scores: Sequence[float]) -> list[BlurDecision]:
        return [self.decide(scores, i) for i in range(len(scores))]
