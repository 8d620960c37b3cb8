"""What a request may ask for: the sampling settings with their defaults and limits, and where the
shipped weights are. Plain Python, so that command lines can check their input before torch loads."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_CANDIDATES = 64
MAX_SEED = 2**63 - 1
# sampling runs in float32: beyond these the logits overflow, or top_p rounds to 0, and no token can be drawn
TEMPERATURE_RANGE = (0.01, 100.0)
TOP_P_RANGE = (1e-6, 1.0)
GUIDANCE_RANGE = (1.0, 100.0)
# the settings that requests sampled together in one pass must share (each keeps its prompt, candidates, seed)
SHARED_SETTINGS = ("temperature", "top_k", "top_p", "guidance")


def shipped_assets() -> Path:
    """The folder of the shipped checkpoint, example scenes and model card.

    A wheel installs `assets/` as the data package `laptop_dalle_assets`; a source checkout
    (or an editable install) has it beside `dalle_core/`.
    """
    spec = importlib.util.find_spec("laptop_dalle_assets")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "assets"


DEFAULT_CHECKPOINT = shipped_assets() / "checkpoint"


@dataclass
class Settings:
    """Sampling settings with their defaults, checked on creation (ValueError with a clear message).

    The best `n` of `candidates` sampled images are kept. `temperature`, `top_k` (0 or None: off)
    and `top_p` (1: off) shape each token's distribution; `guidance` >= 1 is the classifier-free
    guidance scale (1: off); equal settings and `seed` give equal images.
    """

    n: int = 4
    candidates: int = 16
    temperature: float = 1.0
    top_k: int | None = 64
    top_p: float = 1.0
    guidance: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "candidates", "seed"):
            setattr(
                self, name, _integer(getattr(self, name), name)
            )  # the sampler takes Python ints only
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ValueError(
                f"candidates must be between 1 and {MAX_CANDIDATES}, got {self.candidates}"
            )
        if not 1 <= self.n <= self.candidates:
            raise ValueError(
                f"n must be between 1 and the number of candidates ({self.candidates}), got {self.n}"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.top_k is not None:
            self.top_k = _integer(self.top_k, "top_k")
            if self.top_k < 0:
                raise ValueError(f"top_k must be 0 (off) or more, got {self.top_k}")
            self.top_k = self.top_k or None
        self.temperature = _number(self.temperature, "temperature", *TEMPERATURE_RANGE)
        self.top_p = _number(self.top_p, "top_p", *TOP_P_RANGE)
        self.guidance = _number(self.guidance, "guidance", *GUIDANCE_RANGE)


def _integer(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    return int(v)


def _number(v: object, name: str, low: float, high: float) -> float:
    """`v` as a float; ValueError unless it is a finite number in [low, high]."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {v!r}")
    return float(v)


DEFAULTS = Settings()
