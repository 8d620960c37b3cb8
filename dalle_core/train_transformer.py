"""Training the DALL·E transformer on text and image tokens precomputed once by the VAE."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import (
    CheckpointError,
    read_json,
    read_tensors,
    save_model,
    write_json,
    write_tensors,
)
from .data import Source, make_batch, stream_seed, validation_batch
from .device import autocast, bf16_supported
from .figures import grid
from .images import to_uint8
from .judge import judge_image
from .sampling import SamplingParams, generate
from .settings import DEFAULTS
from .text import TextTokenizer
from .training import TrainArgs
from .transformer import DalleTransformer
from .vae import DiscreteVAE

SAMPLE_PROMPTS = [
    "a red circle",
    "a blue square",
    "two green triangles",
    "a yellow diamond above a purple cross",
    "a small pink circle and a large cyan square",
    "three orange crosses",
    "a green circle on a black background",
    "a red square to the left of a blue circle",
]


def precompute_tokens(
    path: Path,
    source: Source,
    vae: DiscreteVAE,
    tokenizer: TextTokenizer,
    n: int,
    seed: int = 0,
    chunk: int = 512,
    val: int = 1024,
    bf16: bool | None = None,
    before_key: Callable[[], None] | None = None,
) -> Path:
    """Write `path` (safetensors): text ids and VAE image tokens of n training pairs and `val` held-out ones.

    Reuses an existing file only if its key (the JSON beside it) is `token_cache_key` of these arguments.
    The key is written last and marks the cache complete; `before_key` runs just before it.
    """
    key = token_cache_key(source, vae, tokenizer, n, seed, val)
    if token_cache_is_current(path, key):
        return path
    device = next(vae.parameters()).device
    bf16 = bf16_supported(device.type) if bf16 is None else bf16

    def encode(images: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), autocast(device.type, bf16):
            image = vae.encode(images.to(device).float().div(255)).cpu()
        return tokenizer.encode_batch(captions, warn=False), image

    texts, images = [], []
    for k in tqdm(
        range((n + chunk - 1) // chunk), desc="encode training pairs", dynamic_ncols=True
    ):
        t, i = encode(*make_batch(source, min(chunk, n - k * chunk), seed, 0, k))
        texts.append(t)
        images.append(i)
    vt, vi = encode(*validation_batch(source, val))
    write_tensors(
        path,
        {
            "text": torch.cat(texts).short(),
            "image": torch.cat(images).short(),
            "val_text": vt.short(),
            "val_image": vi.short(),
        },
    )
    if before_key:
        before_key()
    write_json(path.with_suffix(".json"), key)  # last: the key marks the cache complete
    return path


def token_cache_key(
    source: Source, vae: DiscreteVAE, tokenizer: TextTokenizer, n: int, seed: int, val: int
) -> dict:
    """Everything the cached tokens depend on: the pairs drawn, the VAE's encoder and the tokenizer."""
    return {
        "n": n,
        "seed": seed,
        "val": val,
        "source": source.key,
        "vae": vae_fingerprint(vae),
        "tokenizer": tokenizer.fingerprint,
    }


def token_cache_is_current(path: Path, key: dict) -> bool:
    """Whether the token cache at `path` exists and was made with `key`."""
    meta = path.with_suffix(".json")
    return path.exists() and meta.exists() and read_json(meta) == key


def vae_fingerprint(vae: DiscreteVAE) -> str:
    """A digest of what the tokens depend on, so it changes when they would: the encoder's weights, and with
    a search (`VAEConfig.search` > 1) its number of candidates and the decoder's weights."""
    digest = hashlib.sha256()
    weights = vae.encoder.state_dict()
    if vae.config.search > 1:
        digest.update(f"search {vae.config.search}".encode())
        weights |= {f"decoder.{k}": v for k, v in vae.decoder.state_dict().items()}
    for name, tensor in sorted(weights.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class TransformerRecipe:
    caption_dropout: float = 0.15  # share of captions replaced by all-pad text (for guidance)
    val_samples: int = 32  # prompts sampled and judged at each validation


class TransformerTask:
    """The `Task` that `training.train` runs for the transformer."""

    name = "transformer"

    def __init__(
        self,
        model: DalleTransformer,
        tokens: Path,
        vae: DiscreteVAE,
        tokenizer: TextTokenizer,
        args: TrainArgs,
        recipe: TransformerRecipe,
        judged: list[str] | None = None,
    ):
        """`judged`: the captions that images sampled for the validation captions are judged against, in their
        order (`Source.judged_captions`); None: no judging (a folder of your own)."""
        self.model, self.vae, self.tokenizer, self.args, self.recipe, self.judged = (
            model,
            vae,
            tokenizer,
            args,
            recipe,
            judged,
        )
        made_with = read_json(tokens.with_suffix(".json"))
        if (
            made_with.get("vae") != vae_fingerprint(vae)
            or made_with.get("tokenizer") != tokenizer.fingerprint
        ):
            raise CheckpointError(
                f"the token cache {tokens} was made with another VAE or tokenizer than this run's: "
                "make it again (`dalle train tokens --out DIR`)"
            )
        t = read_tensors(tokens)
        self.text, self.image = t["text"].long(), t["image"].long()
        self.val_text, self.val_image = t["val_text"].long(), t["val_image"].long()
        self.device = next(model.parameters()).device

    def batches(self, start: int, rank: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        k = start
        while True:
            g = torch.Generator().manual_seed(stream_seed(self.args.seed, rank, k))
            idx = torch.randint(len(self.text), (self.args.batch_size,), generator=g)
            text = self.text[idx].clone()
            drop = torch.rand(len(idx), generator=g) < self.recipe.caption_dropout
            text[drop] = self.model.config.pad_id
            yield text.to(self.device), self.image[idx].to(self.device)
            k += 1

    def loss(
        self, batch: tuple[torch.Tensor, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, text_loss, image_loss = self.model.loss(*batch)
        return total, {"loss": total.item(), "text": text_loss.item(), "image": image_loss.item()}

    def validate(self, step: int, out: Path) -> dict[str, float]:
        losses = []
        for i in range(0, len(self.val_text), 256):
            with autocast(self.device.type, self.args.bf16):
                _, _, image_loss = self.model.loss(
                    self.val_text[i : i + 256].to(self.device),
                    self.val_image[i : i + 256].to(self.device),
                )
            losses.append(image_loss.item())
        metrics = {"val_image_loss": float(np.mean(losses))}
        k = max(self.recipe.val_samples - len(SAMPLE_PROMPTS), 0)
        prompts = SAMPLE_PROMPTS + [self.tokenizer.decode(t) for t in self.val_text[:k]]
        images = [self.sample(p, seed=j) for j, p in enumerate(prompts)]
        if self.judged is not None:
            judged = SAMPLE_PROMPTS + self.judged[:k]
            metrics["val_pass"] = float(
                np.mean([judge_image(im, c)[0] for im, c in zip(images, judged, strict=True)])
            )
        grid(images[:16], prompts[:16], cols=8, scale=2).save(out / f"samples-{step:07d}.png")
        return metrics

    @torch.no_grad()
    def sample(self, prompt: str, seed: int) -> np.ndarray:
        """One image for a prompt (temperature 1, top-k 64, guidance 3), uint8 (S, S, 3)."""
        text, _ = self.tokenizer.encode(prompt)
        with autocast(self.device.type, self.args.bf16):
            tokens = generate(
                self.model,
                text.to(self.device),
                1,
                SamplingParams(top_k=DEFAULTS.top_k, guidance=DEFAULTS.guidance, seed=seed),
            )
            return to_uint8(self.vae.decode(tokens.flatten(1)))[0]

    def export(self, out: Path) -> None:
        save_model(out, "transformer", self.model)
