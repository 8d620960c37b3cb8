"""A DALL·E (2021) style decoder-only transformer over one text-then-image token stream.

Stream layout, with T = text_len and N = grid * grid image tokens (L = T + N positions):

    position   0       ...  T-2       T-1        |  T        T+1    ...  T+N-1
    input      text_0  ...  text_{T-2} text_{T-1} |  img_bos  img_0  ...  img_{N-2}
    predicts   text_1  ...  text_{T-1} (nothing)  |  img_0    img_1  ...  img_{N-1}

* Text position t < T-1 predicts text token t+1; position T-1 predicts nothing (the next
  input is always the image BOS).
* Image position T+j predicts image token j, the cell (row, col) = divmod(order[j], grid), where
  order is the image tokens' stream order (``token_order``: raster, order[j] = j, or the second
  edition's panels). Its input is the learned image BOS (j == 0) or image token j-1, plus the row
  and column embeddings of the cell it predicts.
* Text padding follows the paper: a pad id at text position t is embedded as a learned
  per-position padding vector (row ``text_vocab + t`` of the text embedding), so padding needs
  no attention mask. An all-pad text is the unconditional input for classifier-free guidance.

Attention masks (``TransformerConfig.attn_masks``, one per layer), all causal. A text query
attends to text keys at or before it. An image query at position T+j, predicting cell (r, c),
attends to every text key, to its own position (whose input is the previous token, or the BOS
for j == 0, so no query is ever isolated) and to the earlier image positions T+i, 1 <= i < j,
whose input token i-1, at cell (r', c') = divmod(order[i-1], grid), satisfies:

* "causal": always (plain full causal attention);
* "row":    r' == r                        (the already generated part of the same row);
* "column": c' == c                        (the cells above in the same column);
* "conv":   r - h <= r' <= r and |c' - c| <= h with h = conv_kernel // 2 (the raster-earlier
  part of the conv_kernel x conv_kernel window centred on the cell).

These are the axial_row / axial_col / conv_like masks of lucidrains' DALLE-pytorch, stated in
terms of the cell being predicted. The image BOS key is only seen by position T itself.
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
    from .vae import VAEConfig

MASK_KINDS = ("causal", "row", "column", "conv")
ORDERS = ("raster", "panels")


@dataclass
class TransformerConfig:
    """Model hyper-parameters; ``dataclasses.asdict`` / ``TransformerConfig(**d)`` round-trip."""

    text_vocab: int = 1024
    text_len: int = 32
    pad_id: int = 0
    image_vocab: int = 512
    grid: int = 8
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.0
    attn_masks: tuple[str, ...] | None = None  # None: all "causal", last layer "conv"
    conv_kernel: int = 5
    loss_text_weight: float = 1 / 8
    loss_image_weight: float = 7 / 8
    order: str = "raster"  # the image tokens' order in the stream, one of ORDERS (`token_order`)

    def __post_init__(self) -> None:
        if self.attn_masks is None:
            self.attn_masks = ("causal",) * (self.n_layer - 1) + ("conv",)
        self.attn_masks = tuple(self.attn_masks)
        if len(self.attn_masks) != self.n_layer:
            raise ValueError(
                f"attn_masks has {len(self.attn_masks)} entries, n_layer is {self.n_layer}"
            )
        unknown = set(self.attn_masks) - set(MASK_KINDS)
        if unknown:
            raise ValueError(f"unknown attention mask kinds {sorted(unknown)}; use {MASK_KINDS}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0 <= self.pad_id < self.text_vocab:
            raise ValueError(f"pad_id {self.pad_id} is outside the text vocabulary")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd and positive, got {self.conv_kernel}")
        if self.order not in ORDERS:
            raise ValueError(f"unknown token order {self.order!r}; use {ORDERS}")
        if self.order == "panels" and self.grid % 6:
            raise ValueError(f"the panels order needs a grid divisible by 6, got {self.grid}")

    @property
    def image_tokens(self) -> int:
        """Number of image tokens, grid * grid."""
        return self.grid * self.grid

    @property
    def seq_len(self) -> int:
        """Number of stream positions, text_len + image_tokens."""
        return self.text_len + self.image_tokens

    @property
    def image_bos(self) -> int:
        """Image-stream id of the image BOS (one past the image vocabulary)."""
        return self.image_vocab


def paper_masks(n_layer: int) -> tuple[str, ...]:
    """The paper's layout: layer i (1-based) uses "column" when (i - 2) % 4 == 0, else "row";
    the last layer "conv"."""
    return tuple("column" if (i - 2) % 4 == 0 else "row" for i in range(1, n_layer)) + ("conv",)


def token_order(order: str, grid: int) -> torch.Tensor:
    """The raster index of the cell at each image position of the stream (N,).

    "raster": row by row. "panels": the second edition's completions last, each part in raster order: the
    top half, the bottom-left quadrant, the bottom-right quadrant but its bottom-right 3 x 3 panel, that
    panel. A pair's bottom half, an analogy's panel D and a matrix's panel 9 are then ends of the stream,
    drawn after every cell they depend on (raster order puts panel C's lower rows after panel D's first).
    """
    cells = torch.arange(grid * grid)
    if order == "raster":
        return cells
    r, c, half, third = cells // grid, cells % grid, grid // 2, 2 * grid // 3
    part = torch.where(r < half, 0, torch.where(c < half, 1, 2))  # (N,)
    part[(r >= third) & (c >= third)] = 3
    return cells[torch.argsort(part * grid * grid + cells)]


def build_mask(
    kind: str, text_len: int, grid: int, conv_kernel: int, order: str = "raster"
) -> torch.Tensor:
    """Boolean (L, L) attention mask of one kind (True = may attend), as in the module docstring, for the image
    tokens in `order`."""
    T, N = text_len, grid * grid
    pos = torch.arange(T + N)
    mask = pos[:, None] >= pos[None, :]  # (L, L) causal
    if kind == "causal":
        return mask
    cell = token_order(order, grid)  # (N,): the cell predicted by query T+j
    qr, qc = cell[:, None] // grid, cell[:, None] % grid  # (N, 1)
    given = cell.roll(1)  # (N,): the cell of key T+i's input, token i-1 (key T's is the BOS)
    kr, kc = given[None, :] // grid, given[None, :] % grid  # (1, N)
    if kind == "row":
        near = qr == kr
    elif kind == "column":
        near = qc == kc
    elif kind == "conv":
        h = conv_kernel // 2
        near = (qr - kr >= 0) & (qr - kr <= h) & ((qc - kc).abs() <= h)
    else:
        raise ValueError(f"unknown attention mask kind {kind!r}; use {MASK_KINDS}")
    near[:, 0] = False  # the BOS key (input of position T) holds no cell
    mask[T:, T:] &= near | torch.eye(N, dtype=torch.bool)  # (N, N)
    return mask


class SelfAttention(nn.Module):
    """Multi-head self-attention with an explicit mask and an optional KV cache."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cache: torch.Tensor | None, start: int
    ) -> torch.Tensor:
        B, n, C = x.shape
        qkv = (
            self.c_attn(x).view(B, n, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        )  # (3, B, H, n, D)
        q, kv = qkv[0], qkv[1:]  # (B, H, n, D), (2, B, H, n, D)
        if cache is not None:
            cache[:, :, :, start : start + n] = kv  # cache: (2, B, H, L, D)
            kv = cache[:, :, :, : start + n]  # (2, B, H, start+n, D)
        dropout = self.dropout if self.training else 0.0
        y = attention(q, kv[0], kv[1], mask, dropout)  # (B, H, n, D)
        y = y.transpose(1, 2).reshape(B, n, C)  # (B, n, C)
        return self.resid_dropout(self.c_proj(y))


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float
) -> torch.Tensor:
    """Scaled dot-product attention (B, H, n, D) in q's dtype; on a CPU computed in fp32 under any autocast:
    there PyTorch's bf16 flash-attention backward took 3x as long as its fp32 one (EXPERIMENTS.md)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=dropout
        )
    return y.to(q.dtype)


class MLP(nn.Module):
    """Position-wise GELU feed-forward network, 4x wide."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cache: torch.Tensor | None, start: int
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache, start)
        return x + self.mlp(self.ln_2(x))


class DalleTransformer(nn.Module):
    """Text-to-image-token transformer; see the module docstring for the stream layout and masks."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.text_emb = nn.Embedding(
            config.text_vocab + config.text_len, C
        )  # row text_vocab+t: pad at t
        self.text_pos = nn.Embedding(config.text_len, C)
        self.image_emb = nn.Embedding(config.image_vocab + 1, C)  # last row: image BOS
        self.row_emb = nn.Embedding(config.grid, C)
        self.col_emb = nn.Embedding(config.grid, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(C)
        self.text_head = nn.Linear(C, config.text_vocab, bias=False)
        self.image_head = nn.Linear(C, config.image_vocab, bias=False)
        for kind in dict.fromkeys(config.attn_masks):
            mask = build_mask(kind, config.text_len, config.grid, config.conv_kernel, config.order)
            self.register_buffer(f"mask_{kind}", mask, persistent=False)
        self.register_buffer("order", token_order(config.order, config.grid), persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def stream_ids(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Input ids (B, L) of the stream for text (B, T) and image tokens (B, N) in raster order."""
        bos = torch.full_like(image[:, :1], self.config.image_bos)
        return torch.cat([text, bos, image[:, self.order[:-1]]], dim=1)

    def embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Embeddings (B, n, C) of stream input ids (B, n) at positions start .. start+n-1."""
        cfg = self.config
        n = ids.shape[1]
        pos = torch.arange(start, start + n, device=ids.device)  # (n,)
        n_text = max(0, min(cfg.text_len - start, n))
        parts = []
        if n_text:
            text, tpos = ids[:, :n_text], pos[:n_text]  # (B, n_text), (n_text,)
            text = torch.where(text == cfg.pad_id, cfg.text_vocab + tpos, text)
            parts.append(self.text_emb(text) + self.text_pos(tpos))  # (B, n_text, C)
        if n_text < n:
            cell = self.order[pos[n_text:] - cfg.text_len]  # (n_image,): the cells they predict
            pos_emb = self.row_emb(cell // cfg.grid) + self.col_emb(cell % cfg.grid)
            parts.append(self.image_emb(ids[:, n_text:]) + pos_emb)  # (B, n_image, C)
        return torch.cat(parts, dim=1)

    def forward_stream(
        self, ids: torch.Tensor, start: int = 0, cache: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states (B, n, C) of stream positions start .. start+n-1 given their ids (B, n).

        With a cache (from ``new_cache``), the keys/values of positions before ``start`` are
        read from it and those of these positions are written to it; without one, start must be 0.
        """
        end = start + ids.shape[1]
        if end > (self.config.seq_len if cache is None else cache.shape[-2]) or (
            cache is None and start != 0
        ):
            raise ValueError(f"positions {start}..{end - 1} do not fit the stream or the cache")
        masks = {
            kind: getattr(self, f"mask_{kind}")[start:end, :end]
            for kind in dict.fromkeys(self.config.attn_masks)
        }
        x = self.drop(self.embed(ids, start))  # (B, n, C)
        for i, (block, kind) in enumerate(zip(self.blocks, self.config.attn_masks, strict=True)):
            x = block(x, masks[kind], None if cache is None else cache[i], start)
        return self.ln_f(x)

    def new_cache(
        self, batch: int, dtype: torch.dtype | None = None, room: int | None = None
    ) -> torch.Tensor:
        """Uninitialised KV cache (n_layer, 2, batch, n_head, room, head_dim) for ``forward_stream``, with room for
        the first ``room`` stream positions (default all L).

        The dtype defaults to the autocast dtype when autocast is on, else the parameters' dtype.
        """
        cfg = self.config
        device = self.image_head.weight.device
        if dtype is None:
            autocast = torch.is_autocast_enabled(device.type)
            dtype = (
                torch.get_autocast_dtype(device.type) if autocast else self.image_head.weight.dtype
            )
        shape = (cfg.n_layer, 2, batch, cfg.n_head, room or cfg.seq_len, cfg.n_embd // cfg.n_head)
        return torch.empty(shape, dtype=dtype, device=device)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for text (B, T) and image tokens (B, N).

        Returns (logits_text (B, T-1, text_vocab), predicting text[:, 1:]) and
        (logits_image (B, N, image_vocab), predicting image).
        """
        cfg = self.config
        if text.ndim != 2 or text.shape[1] != cfg.text_len:
            raise ValueError(f"text must have shape (B, {cfg.text_len}), got {tuple(text.shape)}")
        if image.shape != (text.shape[0], cfg.image_tokens):
            raise ValueError(
                f"image must have shape ({text.shape[0]}, {cfg.image_tokens}), got {tuple(image.shape)}"
            )
        h = self.forward_stream(self.stream_ids(text, image))  # (B, L, C)
        logits_image = self.image_head(h[:, cfg.text_len :])  # (B, N, V), in stream order
        return self.text_head(h[:, : cfg.text_len - 1]), logits_image[:, self.order.argsort()]

    def loss(
        self, text: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted total, text loss, image loss): mean cross-entropies, pad text targets ignored."""
        cfg = self.config
        logits_text, logits_image = self(text, image)
        target = text[:, 1:]  # (B, T-1)
        text_sum = F.cross_entropy(
            logits_text.flatten(0, 1).float(),
            target.flatten(),
            ignore_index=cfg.pad_id,
            reduction="sum",
        )
        text_loss = text_sum / (target != cfg.pad_id).sum().clamp(min=1)
        image_loss = F.cross_entropy(logits_image.flatten(0, 1).float(), image.flatten())
        total = cfg.loss_text_weight * text_loss + cfg.loss_image_weight * image_loss
        return total, text_loss, image_loss


class DecodeStep:
    """Decoding one stream position at a time after a shared prefix: the image logits (B, image_vocab) of the
    next position of B rows, keeping their keys and values.

    The math of ``forward_stream`` with a cache, one position per call, in a few operator calls per layer. The
    weights are read once, the linear layers' in the compute ``dtype`` (the attention scale folded into the
    query weights); the position embeddings are one table. The keys and values of the prefix (the caption, the
    image BOS and any given image tokens) are held once per distinct prefix: row b continues prefix
    b // (B // U), and its queries meet that prefix's keys in one matmul with the other rows of its group. The
    rows' own keys and values are written in place into a cache that grows ROOM positions at a time, and
    attention runs over all of its room with an additive mask row (-inf where a query may not look, including
    the unfilled zeros), so every step with the same room has the same shapes. On CPU this is several times
    faster than scaled_dot_product_attention for one query (about 20x its FLOP time) or than attending over
    the filled part only (a strided view the batched matmul copies). Attention, LayerNorms and the residual
    stream run in float32 (the parameters' dtype), as under autocast.
    """

    ROOM = 16  # positions the rows' cache grows by

    def __init__(
        self, model: DalleTransformer, dtype: torch.dtype, prefix: torch.Tensor, rows: int
    ):
        """``prefix``: keys and values (n_layer, 2, U, n_head, P, head_dim) of the first P stream positions of U
        distinct prefixes, from ``forward_stream``; ``rows``: B, a multiple of U."""
        cfg = model.config
        self.text_len, self.n_head, self.dtype, self.seq_len = (
            cfg.text_len,
            cfg.n_head,
            dtype,
            cfg.seq_len,
        )
        device = model.image_head.weight.device
        scale = torch.ones(3 * cfg.n_embd, 1, device=device)
        scale[: cfg.n_embd] = (cfg.n_embd // cfg.n_head) ** -0.5  # the query rows of c_attn
        biases = {}
        for kind in dict.fromkeys(cfg.attn_masks):
            mask = getattr(model, f"mask_{kind}")  # (L, L)
            biases[kind] = torch.zeros(mask.shape, device=device).masked_fill_(
                ~mask, -math.inf
            )  # (L, L)

        def norm(ln: nn.LayerNorm) -> tuple:
            return ln.normalized_shape, ln.weight.detach(), ln.bias.detach(), ln.eps

        def cast(w: torch.Tensor) -> torch.Tensor:
            return w.detach().to(dtype)

        self.layers = [(
            biases[kind], norm(block.ln_1), cast(block.attn.c_attn.weight * scale),
            cast(block.attn.c_attn.bias * scale[:, 0]), cast(block.attn.c_proj.weight), cast(block.attn.c_proj.bias),
            norm(block.ln_2), cast(block.mlp.c_fc.weight), cast(block.mlp.c_fc.bias), cast(block.mlp.c_proj.weight),
            cast(block.mlp.c_proj.bias),
        ) for block, kind in zip(model.blocks, cfg.attn_masks, strict=True)]  # fmt: skip
        cell = model.order  # (N,): the cell each image position predicts
        self.image_emb = model.image_emb.weight.detach()
        self.pos_emb = (
            model.row_emb.weight[cell // cfg.grid] + model.col_emb.weight[cell % cfg.grid]
        ).detach()
        self.ln_f, self.head = norm(model.ln_f), cast(model.image_head.weight)
        n_layer, _, U, H, P, D = prefix.shape
        if rows % U:
            raise ValueError(f"{rows} rows do not split into {U} prefixes")
        self.prefix = prefix.to(model.image_head.weight.dtype).flatten(
            2, 3
        )  # (n_layer, 2, U*H, P, D)
        self.cache = prefix.new_zeros(
            n_layer, 2, rows * H, 0, D, dtype=self.prefix.dtype
        )  # (n_layer, 2, B*H, 0, D)

    def __call__(self, ids: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits (B, V) of image position ``pos`` given its input ids (B,); the positions from the end of the
        prefix to ``pos`` - 1 must have been stepped through."""
        B, H, (UH, P, D) = len(ids), self.n_head, self.prefix.shape[2:]
        U, g = UH // H, B * H // UH  # prefixes, rows per prefix
        old = self.cache.shape[3]
        if pos - P >= old:  # grow the rows' cache, zeros in the new room
            grown = self.cache.new_empty(
                *self.cache.shape[:3], min(pos - P + self.ROOM, self.seq_len - P), D
            )
            grown[:, :, :, :old], grown[:, :, :, old:] = self.cache, 0
            self.cache = grown
        room = self.cache.shape[3]
        with torch.autocast(ids.device.type, enabled=False):  # the dtypes are chosen here
            x = self.image_emb[ids] + self.pos_emb[pos - self.text_len]  # (B, C)
            for i, (
                bias,
                ln_1,
                w_qkv,
                b_qkv,
                w_proj,
                b_proj,
                ln_2,
                w_fc,
                b_fc,
                w_out,
                b_out,
            ) in enumerate(self.layers):
                qkv = F.linear(F.layer_norm(x, *ln_1).to(self.dtype), w_qkv, b_qkv).view(
                    B, 3, H, -1
                )  # (B, 3, H, D)
                self.cache[i, :, :, pos - P] = (
                    qkv[:, 1:].transpose(0, 1).flatten(1, 2)
                )  # (2, B*H, D)
                q = qkv[:, 0].to(x.dtype)  # (B, H, D)
                (k_pre, v_pre), (k, v) = (
                    self.prefix[i],
                    self.cache[i],
                )  # (U*H, P, D), (B*H, room, D)
                q_pre = (
                    q.view(U, g, H, -1).transpose(1, 2).reshape(UH, g, -1)
                )  # (U*H, g, D): a prefix's rows
                s_pre = (
                    torch.bmm(q_pre, k_pre.transpose(1, 2)).view(U, H, g, P).transpose(1, 2)
                )  # (U, g, H, P)
                s_own = torch.bmm(q.reshape(B * H, 1, -1), k.transpose(1, 2))  # (B*H, 1, room)
                att = torch.cat(
                    [s_pre.reshape(B * H, 1, P), s_own], -1
                )  # (B*H, 1, P+room): positions 0, 1, ...
                att = att.add_(bias[pos, : P + room]).softmax(-1)
                a_pre = (
                    att[:, :, :P].view(U, g, H, P).transpose(1, 2).reshape(UH, g, P)
                )  # (U*H, g, P)
                y_pre = (
                    torch.bmm(a_pre, v_pre).view(U, H, g, -1).transpose(1, 2).reshape(B * H, 1, -1)
                )
                y = torch.baddbmm(y_pre, att[:, :, P:], v).view(B, -1).to(self.dtype)  # (B, C)
                x = x + F.linear(y, w_proj, b_proj)
                x = x + F.linear(
                    F.gelu(F.linear(F.layer_norm(x, *ln_2).to(self.dtype), w_fc, b_fc)),
                    w_out,
                    b_out,
                )
            return F.linear(F.layer_norm(x, *self.ln_f).to(self.dtype), self.head)


def load_transformer(
    directory: str | Path, tokenizer: TextTokenizer, vae: VAEConfig, device: str = "cpu"
) -> DalleTransformer:
    """The transformer saved as `transformer.safetensors` + `transformer.json` in a directory, in eval mode;
    `CheckpointError` if it is missing, damaged, or reads other tokens than the tokenizer and VAE give."""
    path = Path(directory) / "transformer.json"
    config = config_from_json(TransformerConfig, path)
    fields = ("text_vocab", "text_len", "pad_id", "image_vocab", "grid")
    theirs = {f: getattr(config, f) for f in fields}
    ours = dict(
        zip(
            fields,
            (tokenizer.vocab_size, tokenizer.length, tokenizer.pad_id, vae.codebook, vae.grid),
            strict=True,
        )
    )
    if theirs != ours:
        raise CheckpointError(f"{path} reads {theirs}, but the tokenizer and VAE give {ours}")
    return load_model(directory, "transformer", DalleTransformer, TransformerConfig, device)
