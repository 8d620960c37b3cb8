"""The contrastive scorer (OpenAI CLIP, small): a text and an image encoder into one space, and its loading.

Both encoders end in a linear projection to `embed_dim` and an L2 normalisation, so the
similarity of an image and a text is a cosine, multiplied by a learned temperature
`logit_scale.exp()` (capped at 100, as in CLIP). The loss and the training data live in
`train_clip.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import CheckpointError, config_from_json, load_model

if TYPE_CHECKING:
    from .text import TextTokenizer

MAX_LOGIT_SCALE = 100.0


@dataclass
class ClipConfig:
    """Model hyper-parameters; the text fields must match the `TextTokenizer` used with it."""

    text_vocab: int = 512
    text_len: int = 26
    eos_id: int = 2  # the text is pooled at this token (the tokenizer puts one in every row)
    image_size: int = 64
    embed_dim: int = 128  # the shared space
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    image_widths: tuple[int, ...] = (32, 64, 128, 128)  # channels after each stride-2 stage

    def __post_init__(self):
        self.image_widths = tuple(self.image_widths)
        if self.text_width % self.text_heads:
            raise ValueError(
                f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}"
            )
        if not 0 <= self.eos_id < self.text_vocab:
            raise ValueError(
                f"eos_id {self.eos_id} is outside the text vocabulary of {self.text_vocab}"
            )
        if any(w % 8 for w in self.image_widths):
            raise ValueError(
                f"image_widths must be multiples of 8 (for group norm), got {self.image_widths}"
            )
        if self.image_size % 2 ** len(self.image_widths):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2^{len(self.image_widths)} "
                "(one halving per entry of image_widths)"
            )

    @property
    def grid(self) -> int:
        """Side of the image encoder's last feature grid."""
        return self.image_size // 2 ** len(self.image_widths)


class TextEncoder(nn.Module):
    """Token ids (B, T) -> features (B, text_width): a transformer read at the EOS token.

    Unlike CLIP's, attention is not causal: every word sees the whole caption (the first object's
    words see the relation that follows them), which makes binding far easier to learn. Whatever
    follows the EOS is masked out.
    """

    def __init__(self, c: ClipConfig):
        super().__init__()
        self.eos_id = c.eos_id
        self.token = nn.Embedding(c.text_vocab, c.text_width)
        self.position = nn.Parameter(torch.randn(c.text_len, c.text_width) * 0.01)
        nn.init.normal_(self.token.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            c.text_width,
            c.text_heads,
            4 * c.text_width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, c.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.text_width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        eos = (ids == self.eos_id).int().argmax(dim=1)  # the first EOS of each row
        T = int(eos.max()) + 1  # positions after the last EOS are masked anyway
        after_eos = torch.arange(T, device=ids.device)[None, :] > eos[:, None]  # (B, T)
        x = self.token(ids[:, :T]) + self.position[:T]
        x = self.norm(self.blocks(x, src_key_padding_mask=after_eos))
        return x[torch.arange(len(ids), device=ids.device), eos]


class ImageEncoder(nn.Module):
    """Pixels in [0, 1] (B, 3, S, S) -> features (B, C * g * g): stride-2 conv stages, then the last
    grid flattened (not averaged), so that where things are survives into the embedding."""

    def __init__(self, c: ClipConfig):
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for w in c.image_widths:
            layers += [
                nn.Conv2d(ch, w, 3, stride=2, padding=1),
                nn.GroupNorm(8, w),
                nn.GELU(),
                nn.Conv2d(w, w, 3, padding=1),
                nn.GroupNorm(8, w),
                nn.GELU(),
            ]
            ch = w
        self.net = nn.Sequential(*layers)
        self.out_features = ch * c.grid * c.grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(2 * images - 1).flatten(1)


class Clip(nn.Module):
    """Text and image encoders with projections into one space and a learned logit scale."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        self.text = TextEncoder(config)
        self.image = ImageEncoder(config)
        self.text_proj = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.image_proj = nn.Linear(self.image.out_features, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1] -> unit vectors (B, embed_dim)."""
        return F.normalize(self.image_proj(self.image(images)).float(), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) from `TextTokenizer` -> unit vectors (B, embed_dim)."""
        return F.normalize(self.text_proj(self.text(ids)).float(), dim=-1)

    @property
    def scale(self) -> torch.Tensor:
        """The temperature that multiplies cosines: exp(logit_scale), at most 100."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The logits of every image against every text: (B_images, B_texts) scaled cosines."""
        return self.scale * self.encode_image(images) @ self.encode_text(ids).T

    def score(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The scaled cosine of each image with its text: (B,). `ids` is (B, T), or (T,) for one text for all."""
        text = self.encode_text(ids.reshape(-1, ids.shape[-1]))
        return self.scale * (self.encode_image(images) * text).sum(-1)


def make_clip(tokenizer: TextTokenizer, image_size: int = 64, **config) -> Clip:
    """A new scorer for the tokenizer's ids; `config` overrides the other `ClipConfig` fields."""
    return Clip(
        ClipConfig(
            text_vocab=tokenizer.vocab_size,
            text_len=tokenizer.length,
            eos_id=tokenizer.eos_id,
            image_size=image_size,
            **config,
        )
    )


def check_tokenizer(config: ClipConfig, tokenizer: TextTokenizer, what: str) -> None:
    """Raise `CheckpointError` when the tokenizer's ids do not fit the config, naming both."""
    ours = (config.text_vocab, config.text_len, config.eos_id)
    theirs = (tokenizer.vocab_size, tokenizer.length, tokenizer.eos_id)
    if ours != theirs:
        raise CheckpointError(
            f"{what} expects {ours[0]} text tokens of length {ours[1]} (EOS id {ours[2]}), but the "
            f"tokenizer has {theirs[0]} of length {theirs[1]} (EOS id {theirs[2]})"
        )


def load_clip(directory: str | Path, tokenizer: TextTokenizer, device: str = "cpu") -> Clip:
    """The scorer saved as `clip.safetensors` + `clip.json` in a directory, in eval mode;
    `CheckpointError` if it is missing, damaged, or was trained with another tokenizer."""
    directory = Path(directory)
    check_tokenizer(
        config_from_json(ClipConfig, directory / "clip.json"),
        tokenizer,
        f"{directory / 'clip.json'}",
    )
    return load_model(directory, "clip", Clip, ClipConfig, device)
