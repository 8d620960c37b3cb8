"""How faithfully a discrete VAE keeps what the shapes world's evaluator reads.

For held-out single scenes of the second edition and each layout kind at the VAE's image size: the
share whose reconstruction parses like the original (a scene), or per panel (a layout), the PSNR of
the reconstructions and the share of the codebook used. This is the tokenizer's bar (>= 99% for every
kind). Layouts that do not fit the image size (a v1 VAE at 64 px holds no analogy) are skipped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .figures import grid
from .images import to_float, to_uint8
from .judge import parse, parse_layout, scenes_match
from .layouts import LAYOUTS, check_side, matches, sample_layout
from .vae import DiscreteVAE
from .world import render
from .world2 import sample_scene2

KINDS = ("single", *LAYOUTS)
BAR = 0.99


@dataclass
class KindReport:
    """One row of the report: `items` images of a kind, `units` judged (scenes, or panels of a layout), and the
    held-out numbers of the images with a unit that did not parse like the original."""

    kind: str
    items: int
    units: int
    faithful: float
    psnr: float
    misses: list[int] = field(default_factory=list)

    @property
    def meets_bar(self) -> bool:
        return self.faithful >= BAR


def held_out(kind: str, i: int, W: int) -> np.ndarray:
    """Held-out image number i of a kind (W, W, 3) uint8; the training stream never draws it (its
    random streams are seeded by strings, the stream's by integers)."""
    if kind == "single":
        return render(sample_scene2(random.Random(f"vae report/{i}"), W)[0], W)
    return sample_layout(kind, 1_000_000_000 + i, W).image


def judge_pair(kind: str, original: np.ndarray, reconstruction: np.ndarray) -> list[bool]:
    """Per scene (one verdict) or per panel: whether the reconstruction parses like the original."""
    if kind == "single":
        return [scenes_match(parse(original, oriented=True), parse(reconstruction, oriented=True))]
    bg_a, panels_a = parse_layout(original, kind)
    bg_b, panels_b = parse_layout(reconstruction, kind)
    return [bg_a == bg_b and matches(a, b) for a, b in zip(panels_a, panels_b, strict=True)]


def fits(kind: str, W: int) -> bool:
    """Whether a canvas of side W holds the kind (single scenes always fit)."""
    if kind == "single":
        return True
    try:
        check_side(kind, W)
    except ValueError:
        return False
    return True


def vae_report(
    vae: DiscreteVAE,
    n: int = 1000,
    kinds: tuple[str, ...] = KINDS,
    batch: int = 50,
    progress: Callable | None = tqdm,
) -> tuple[list[KindReport], float]:
    """The report's rows for `n` held-out images of each kind that fits the VAE's image size, and the
    share of the codebook the encoder used on all of them."""
    W, used, rows = vae.config.image_size, torch.zeros(vae.config.codebook, dtype=torch.bool), []
    for kind in (k for k in kinds if fits(k, W)):
        verdicts, misses, squared = [], [], 0.0
        starts = range(0, n, batch)
        for start in progress(starts, desc=kind, unit="batch") if progress else starts:
            numbers = range(start, min(start + batch, n))
            originals = np.stack([held_out(kind, i, W) for i in numbers])
            x = to_float(originals)  # (B, 3, W, W)
            tokens, recon = reconstruct(vae, x)
            used[tokens.unique()] = True
            squared += float(((recon - x) ** 2).sum())
            for i, a, b in zip(numbers, originals, to_uint8(recon), strict=True):
                judged = judge_pair(kind, a, b)
                verdicts += judged
                if not all(judged):
                    misses.append(i)
        mse = squared / (n * 3 * W * W)
        rows.append(
            KindReport(
                kind,
                n,
                len(verdicts),
                float(np.mean(verdicts)),
                10 * np.log10(1 / max(mse, 1e-10)),
                misses,
            )
        )
    return rows, float(used.float().mean())


def reconstruct(vae: DiscreteVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes (B, grid*grid) of images x (B, 3, W, W) in [0, 1] and their decoding, on the CPU."""
    device = next(vae.parameters()).device
    with torch.inference_mode():
        tokens = vae.encode(x.to(device))  # (B, grid*grid)
        recon = vae.decode(tokens).float().clamp(0, 1)  # (B, 3, W, W)
    return tokens.cpu(), recon.cpu()


def misses_figure(
    vae: DiscreteVAE, rows: list[KindReport], per_kind: int = 6
) -> Image.Image | None:
    """The first misses of each kind, each original beside its reconstruction (None if nothing missed)."""
    W = vae.config.image_size
    shown = [(r.kind, i) for r in rows for i in r.misses[:per_kind]]
    if not shown:
        return None
    originals = np.stack([held_out(kind, i, W) for kind, i in shown])
    recon = to_uint8(reconstruct(vae, to_float(originals))[1])
    images = [image for pair in zip(originals, recon, strict=True) for image in pair]
    captions = [c for kind, i in shown for c in (f"{kind} {i}", f"{kind} {i} decoded")]
    return grid(images, captions, cols=6, scale=2)


def report_markdown(rows: list[KindReport], codebook_used: float) -> str:
    """The report as a markdown table, each kind against the bar."""
    lines = [
        "| kind | images | judged | faithful | PSNR (dB) | bar (>= 99%) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.kind} | {r.items} | {r.units} | {100 * r.faithful:.2f}% | {r.psnr:.2f} | "
        f"{'met' if r.meets_bar else 'not met'} |"
        for r in rows
    ]
    return "\n".join(lines) + f"\n\nCodebook used: {100 * codebook_used:.1f}% of the codes.\n"


def report_json(rows: list[KindReport], codebook_used: float) -> dict:
    """The report as JSON-ready data."""
    return {"kinds": [asdict(r) for r in rows], "codebook_used": codebook_used, "bar": BAR}
