"""Training the discrete VAE the DALL·E way: Gumbel-softmax relaxation, KL to a uniform prior,
a cosine-annealed temperature, and a cosine warm-up of the KL weight."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import save_model
from .data import ShapesWorld2, Source, batch_loader, validation_batch
from .device import autocast
from .figures import grid
from .images import to_uint8
from .judge import parse, scenes_match
from .training import TrainArgs
from .vae import DiscreteVAE
from .vae_report import vae_report


@dataclass
class VAERecipe:
    """The objective's schedule (fractions are of the whole run)."""

    tau_start: float = 1.0
    tau_end: float = 1 / 16
    tau_anneal: float = (
        1.0  # the temperature reaches tau_end at this fraction of the run, then stays
    )
    kl_weight: float = (
        1e-4  # on the mean per-cell KL(q || uniform), beside a per-pixel mean reconstruction loss
    )
    kl_warmup: float = 0.2
    decoder_only_from: float = (
        0.7  # then freeze the encoder and fit the decoder to its argmax codes
    )
    recon: str = "l1"  # "l1" or "mse"
    foreground_weight: float = 10.0  # weight of pixels unlike the image's border colour (1 = plain)
    edge_weight: float = (
        20.0  # extra weight of pixels on a colour boundary, where shapes differ (0 = none)
    )
    val_images: int = 512
    val_report: int = (
        100  # second edition: held-out images of each kind judged per validation (`vae_report`)
    )


def cosine(t: float, start: float, end: float) -> float:
    """Cosine from `start` at t = 0 to `end` at t = 1."""
    t = min(max(t, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * t))


def foreground_weights(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, S, S): `weight` where a pixel differs from the median border colour, else 1.

    Objects cover a tenth of a world image; unweighted, the VAE learns backgrounds long before shapes.
    """
    border = torch.cat(
        [x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2
    )  # (B, 3, 4S)
    bg = border.median(dim=2).values[:, :, None, None]  # (B, 3, 1, 1)
    return 1 + (weight - 1) * ((x - bg).abs().sum(1, keepdim=True) > 0.1).float()


def edge_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S): 1 where a pixel's 3 x 3 neighbourhood holds more than one colour, else 0."""
    spread = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(
        -x, 3, 1, 1
    )  # (B, 3, S, S): local max - local min
    return (spread.sum(1, keepdim=True) > 0.1).float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def codebook_stats(tokens: torch.Tensor, K: int) -> tuple[float, float]:
    """(perplexity of the code histogram, share of the K codes used)."""
    counts = torch.bincount(tokens.flatten(), minlength=K).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return math.exp(entropy), (counts > 0).float().mean().item()


def faithfulness(originals: np.ndarray, reconstructions: np.ndarray) -> float:
    """Share of images whose reconstruction parses to the same scene as the original."""
    return float(
        np.mean([scenes_match(parse(a), parse(b)) for a, b in zip(originals, reconstructions)])
    )


class VAETask:
    """The `Task` that `training.train` runs for the discrete VAE."""

    name = "vae"

    def __init__(
        self,
        model: DiscreteVAE,
        source: Source,
        args: TrainArgs,
        recipe: VAERecipe,
        faithful: bool = True,
    ):
        self.model, self.source, self.args, self.recipe, self.faithful = (
            model,
            source,
            args,
            recipe,
            faithful,
        )
        self.val_images, _ = validation_batch(source, recipe.val_images)

    def schedule(self, step: int) -> tuple[float, float]:
        """(temperature, KL weight) at a step."""
        t = step / max(1, self.args.steps)
        r = self.recipe
        tau = r.tau_end * (r.tau_start / r.tau_end) ** cosine(
            t / max(r.tau_anneal, 1e-9), 1.0, 0.0
        )  # cosine in log-space
        beta = r.kl_weight * cosine(t / max(r.kl_warmup, 1e-9), 0.0, 1.0)
        return tau, beta

    def batches(self, start: int, rank: int = 0) -> Iterator[torch.Tensor]:
        for images, _ in batch_loader(
            self.source,
            self.args.batch_size,
            self.args.seed,
            rank,
            start=start,
            workers=self.args.workers,
        ):
            yield images.float().div(255).to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        r = self.recipe
        if step >= r.decoder_only_from * self.args.steps:
            return self._decoder_loss(x)
        tau, beta = self.schedule(step)
        recon, logits = self.model(x, tau)
        recon, logits = recon.float(), logits.float()
        rec = self._reconstruction(recon, x)
        logq = F.log_softmax(logits, dim=1)  # (B, K, h, w)
        kl = (logq.exp() * logq).sum(1).mean() + math.log(
            logits.shape[1]
        )  # KL(q || uniform) per cell
        return rec + beta * kl, {"loss": rec.item(), "kl": kl.item(), "tau": tau}

    def _decoder_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The reconstruction loss of the encoder's argmax codes (no noise), for the decoder alone; it logs
        the loss only, since no temperature or KL term enters it. (Not `encode`'s search, which would add
        several decodings to every step.)"""
        with torch.no_grad():
            tokens = self.model.encoder(x).argmax(dim=1).flatten(1)
        recon = self.model.decode(tokens).float()
        rec = self._reconstruction(recon, x)
        return rec, {"loss": rec.item()}

    def _reconstruction(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        err = (recon - x).abs() if self.recipe.recon == "l1" else (recon - x) ** 2
        w = foreground_weights(
            x, self.recipe.foreground_weight
        ) + self.recipe.edge_weight * edge_mask(x)
        return (err * w).mean() / w.mean()

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """The argmax codes (N, h, w) of uint8 images (N, 3, S, S), on the model's device."""
        tokens = []
        for i in range(0, len(images), batch):
            with autocast(self.device.type, self.args.bf16):
                tokens.append(
                    self.model.encode(images[i : i + batch].float().div(255).to(self.device))
                )
        return torch.cat(tokens)

    @torch.no_grad()
    def reconstruct(
        self, images: torch.Tensor, batch: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, reconstructions) of uint8 images, through argmax codes, on the CPU."""
        tokens, recs = self.encode(images, batch), []
        for i in range(0, len(tokens), batch):
            with autocast(self.device.type, self.args.bf16):
                recs.append(self.model.decode(tokens[i : i + batch]).float().cpu())
        return tokens.cpu(), torch.cat(recs)

    def validate(self, step: int, out: Path) -> dict[str, float]:
        tokens, recon = self.reconstruct(self.val_images)
        x = self.val_images.float() / 255
        perplexity, used = codebook_stats(tokens, self.model.config.codebook)
        metrics = {"psnr": psnr(recon, x), "perplexity": perplexity, "codes_used": used}
        originals, recons = to_uint8(x), to_uint8(recon)
        if self.faithful and isinstance(
            self.source, ShapesWorld2
        ):  # the tokenizer's bar, kind by kind
            rows, _ = vae_report(self.model, self.recipe.val_report, progress=None)
            metrics.update({f"faithful_{r.kind}": r.faithful for r in rows})
        elif self.faithful:
            metrics["faithful"] = faithfulness(originals, recons)
        pairs = [img for a, b in zip(originals[:16], recons[:16]) for img in (a, b)]
        grid(pairs, cols=8, scale=2).save(out / f"recon-{step:07d}.png")
        return metrics

    def export(self, out: Path) -> None:
        save_model(out, "vae", self.model)
