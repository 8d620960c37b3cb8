"""The discrete VAE (DALL·E stage 1): images <-> an h x w grid of codebook tokens. Modules only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VAEConfig:
    image_size: int = 64
    f: int = 8  # downsampling factor: the token grid is image_size / f on a side
    codebook: int = 512  # K, the number of codes
    widths: tuple[int, ...] = (
        16,
        32,
        64,
        128,
    )  # channels at image_size, /2, /4, ... (len = log2(f) + 1)
    n_res: int = 1  # residual blocks per level
    code_dim: int = (
        0  # > 0: logits are scaled cosines to K unit code vectors of this size (0: a linear layer)
    )

    def __post_init__(self):
        levels = self.f.bit_length() - 1
        if self.f < 1 or 2**levels != self.f:
            raise ValueError(f"f must be a power of two, got {self.f}")
        if len(self.widths) != levels + 1:
            raise ValueError(
                f"widths needs log2(f) + 1 = {levels + 1} entries, got {len(self.widths)}"
            )
        if self.image_size % self.f:
            raise ValueError(f"image_size {self.image_size} is not a multiple of f = {self.f}")

    @property
    def grid(self) -> int:
        return self.image_size // self.f


def _he_init(net: nn.Sequential) -> None:
    """He initialisation of the stack's convolutions (not the residual branches' last ones), so that
    signals keep their scale: the code logits start informative instead of drowned by Gumbel noise."""
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, ResBlock):
            nn.init.kaiming_normal_(m.conv1.weight, nonlinearity="relu")


class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))), the second conv starting near zero (no normalisation)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.normal_(self.conv2.weight, std=1e-3)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class CosineLogits(nn.Module):
    """Features (B, d, h, w) -> code logits (B, K, h, w): a learned scale times the cosine to each of K code
    vectors, so that no code wins everywhere by the size of its weights alone."""

    def __init__(self, dim: int, codebook: int):
        super().__init__()
        self.codes = nn.Parameter(torch.randn(codebook, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos = torch.einsum(
            "bdhw,kd->bkhw", F.normalize(x, dim=1), F.normalize(self.codes, dim=1)
        )  # (B, K, h, w)
        return self.log_scale.exp().clamp(max=100.0) * cos


class Encoder(nn.Module):
    """Pixels in [0, 1] (B, 3, S, S) -> code logits (B, K, S/f, S/f)."""

    def __init__(self, c: VAEConfig):
        super().__init__()
        w = c.widths
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 3, padding=1)]
        for i in range(len(w) - 1):
            layers += [ResBlock(w[i]) for _ in range(c.n_res)]
            layers += [nn.ReLU(), nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1)]
        layers += [ResBlock(w[-1]) for _ in range(c.n_res)]
        if c.code_dim:
            layers += [
                nn.ReLU(),
                nn.Conv2d(w[-1], c.code_dim, 1),
                CosineLogits(c.code_dim, c.codebook),
            ]
        else:
            layers += [nn.ReLU(), nn.Conv2d(w[-1], c.codebook, 1)]
        self.net = nn.Sequential(*layers)
        _he_init(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((2 * x - 1).contiguous(memory_format=torch.channels_last))


class Decoder(nn.Module):
    """Code distributions (B, K, h, w) (one-hot or relaxed) -> pixels in [0, 1] (B, 3, S, S)."""

    def __init__(self, c: VAEConfig):
        super().__init__()
        w = c.widths
        self.embed = nn.Conv2d(c.codebook, w[-1], 1, bias=False)  # a code embedding per column
        nn.init.normal_(
            self.embed.weight
        )  # unit-scale embeddings: a one-hot code gives unit-scale features
        layers: list[nn.Module] = [ResBlock(w[-1]) for _ in range(c.n_res)]
        for i in reversed(range(len(w) - 1)):
            layers += [
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(w[i + 1], w[i], 3, padding=1),
            ]
            layers += [ResBlock(w[i]) for _ in range(c.n_res)]
        layers += [nn.ReLU(), nn.Conv2d(w[0], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        _he_init(self.net)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(self.embed(z.contiguous(memory_format=torch.channels_last))))


def gumbel_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax((logits + g) / tau) over dim 1 with Gumbel(0, 1) noise g, as `F.gumbel_softmax`, whose
    exponential sampler took 3x as long on CPU (a tenth of a dVAE training step): g = -log(-log(u)), u ~ U[0, 1)."""
    g = torch.rand_like(logits).log_().neg_().log_().neg_()
    return ((logits + g) / tau).softmax(dim=1)


class DiscreteVAE(nn.Module):
    """Encoder, Gumbel-softmax bottleneck and decoder; `encode`/`decode` work on token grids."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.to(
            memory_format=torch.channels_last
        )  # the convolutions' fast layout: 1.3-1.4x per CPU training step

    def forward(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Relaxed round trip: (reconstruction (B, 3, S, S), code logits (B, K, h, w))."""
        logits = self.encoder(x)  # (B, K, h, w)
        z = gumbel_softmax(logits.float(), tau)  # (B, K, h, w), rows sum to 1
        return self.decoder(z.to(logits.dtype)), logits

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, S, S) -> tokens (B, h*w), the argmax code of each cell in raster order."""
        return self.encoder(x).argmax(dim=1).flatten(1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h*w) -> images in [0, 1] (B, 3, S, S); the top rows of grids (B, rows, w) -> the top
        rows * f pixel rows (B, 3, rows * f, S)."""
        grids = tokens.reshape(len(tokens), -1, self.config.grid)  # (B, rows, w)
        z = F.one_hot(grids, self.config.codebook).permute(0, 3, 1, 2)  # (B, K, rows, w)
        return self.decoder(z.to(self.decoder.embed.weight.dtype))
