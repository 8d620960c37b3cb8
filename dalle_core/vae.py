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
    search: int = 1  # codes `encode` tries per cell: 1 takes the encoder's argmax; k > 1, see `DiscreteVAE.search`

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
        if not 1 <= self.search <= self.codebook:
            raise ValueError(
                f"search must be between 1 and codebook = {self.codebook}, got {self.search}"
            )

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


# the mean squared error (summed over colours) of a cell below which `search` leaves its first code
SEARCH_FROM = 0.01


def _neighbourhoods(errors: torch.Tensor, f: int) -> torch.Tensor:
    """Pixel errors (B, 1, S, S) -> their mean over each cell's 3 x 3-cell neighbourhood (B, S/f, S/f)."""
    return F.avg_pool2d(errors, 3 * f, stride=f, padding=f, count_include_pad=False)[:, 0]


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
        """Images in [0, 1] (B, 3, S, S) -> tokens (B, h*w) in raster order: each cell's argmax code, or with
        `config.search` > 1 the codes `search` chooses among each cell's most likely ones."""
        logits = self.encoder(x)  # (B, K, h, w)
        if self.config.search == 1:
            return logits.argmax(dim=1).flatten(1)
        return self.search(x, logits.float().topk(self.config.search, dim=1).indices).flatten(1)

    @torch.no_grad()
    def search(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Analysis by synthesis: images x (B, 3, S, S) and each cell's candidate codes, most likely first
        (B, k, h, w) -> a grid of codes (B, h, w) that decodes closer to x. A cell whose first candidate
        decodes within `SEARCH_FROM` of x keeps it. The others go in nine groups of cells three apart; each
        group tries every other candidate at once, and a cell keeps the one with the least squared error
        over its 3 x 3-cell neighbourhood (the decoder's view of a cell barely reaches the next cell of its
        group)."""
        f, (h, w) = self.config.f, candidates.shape[2:]
        tokens = candidates[:, 0].clone()  # (B, h, w)
        errors = self._squared_errors(tokens, x)  # (B, 1, S, S)
        searched = F.avg_pool2d(errors, f)[:, 0] > SEARCH_FROM  # (B, h, w)
        best = _neighbourhoods(errors, f)  # (B, h, w)
        rows, cols = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        for group in range(9):
            cells = searched & ((rows % 3) * 3 + cols % 3 == group)  # (B, h, w)
            # the images with cells of this group to search
            images = cells.flatten(1).any(1).nonzero()[:, 0]  # (n,)
            if len(images) == 0:
                continue
            cells, xs, grids, least = cells[images], x[images], tokens[images], best[images]
            for trial in candidates[images, 1:].unbind(1):  # (n, h, w) each
                trial = torch.where(cells, trial, grids)
                trial_errors = _neighbourhoods(self._squared_errors(trial, xs), f)
                better = cells & (trial_errors < least)
                grids = torch.where(better, trial, grids)
                least = torch.where(better, trial_errors, least)
            tokens[images] = grids
            best[images] = _neighbourhoods(self._squared_errors(grids, xs), f)  # neighbours' too
        return tokens

    def _squared_errors(self, grids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Code grids (B, h, w) -> the squared error of their decoding against x, summed over colours
        (B, 1, S, S)."""
        return (self.decode(grids.flatten(1)).float() - x.float()).square().sum(1, keepdim=True)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h*w) -> images in [0, 1] (B, 3, S, S); the top rows of grids (B, rows, w) -> the top
        rows * f pixel rows (B, 3, rows * f, S)."""
        grids = tokens.reshape(len(tokens), -1, self.config.grid)  # (B, rows, w)
        z = F.one_hot(grids, self.config.codebook).permute(0, 3, 1, 2)  # (B, K, rows, w)
        return self.decoder(z.to(self.decoder.embed.weight.dtype))
