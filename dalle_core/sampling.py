"""Sampling image tokens from a DalleTransformer: generation, completion and streaming.

All candidates of one call run as one batch: the known prefix (text, image BOS and any given
image tokens before the first sampled one) in one forward call, computed once per distinct
prefix, then one ``DecodeStep`` per later position (given tokens between sampled ones, in
completion, are stepped through too, their logits unused).

Classifier-free guidance puts the conditional rows and as many unconditional rows (all-pad
text, fed the same image tokens) in one batch of 2n and samples from
``uncond + guidance * (cond - uncond)``; guidance == 1 runs the conditional rows only.

Callers may wrap calls in ``torch.autocast``: the linear layers then run in the autocast dtype
(attention and the keys and values stay in the parameters' dtype).
"""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from dalle_core.transformer import DalleTransformer, DecodeStep


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each image token; invalid values raise ValueError on construction.

    temperature > 0 divides the (guided) logits; top_k keeps the k most likely tokens (None or 0:
    off; 1: greedy); top_p keeps the smallest set of most likely tokens whose probability reaches
    top_p (1: off); guidance >= 1 is the classifier-free guidance scale (1: off); seed seeds the
    random generator, so equal inputs and seeds give equal tokens.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    guidance: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise ValueError(f"top_k must be None, 0 (off) or an int >= 1, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (self.guidance >= 1 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be a finite number >= 1, got {self.guidance}")
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an int, got {self.seed!r}")


def stream(
    model: DalleTransformer,
    text: torch.Tensor,
    n: int,
    params: SamplingParams = SamplingParams(),
    *,
    image: torch.Tensor | None = None,
    region: tuple[int, int] | None = None,
    blocks: Sequence[tuple[int, int]] | None = None,
) -> Iterator[torch.Tensor]:
    """Samples n image token grids for a caption, yielding progress after each image row.

    text: padded text ids (T,) or (1, T) shared by all candidates, or (n, T).
    blocks: (count, seed) of consecutive runs of candidates (counts summing to n), each drawn from a random
    generator of its own, so that a block's tokens are those of a call for its rows alone with that seed (up
    to rounding in the batched arithmetic); None is one block of n with ``params.seed``. This is how the
    candidates of several requests (rows of different captions) share one call.
    image, region: for completion, the given image tokens ((N,), (grid, grid), or the same with
    a leading batch dim of 1 or n) and the (row, col) of the top-left corner of the rectangle to
    regenerate: the tokens with row >= row and col >= col are sampled, all others are copied
    from ``image``. Both or neither must be given.

    Yields LongTensor (n, grid, grid) after each `grid` sampled positions (a row in raster order;
    `stream_length` says how many), with -1 at not yet sampled tokens; the last yield is the finished batch.
    Arguments are checked when called, not when iterated.
    """
    cfg = model.config
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    device = model.image_head.weight.device
    text = _batch_of(text, n, (cfg.text_len,), "text").to(device)
    if ((text < 0) | (text >= cfg.text_vocab)).any():
        raise ValueError(f"text ids must be in [0, {cfg.text_vocab})")
    if (image is None) != (region is None):
        raise ValueError("image and region must be given together (completion) or not at all")
    grid, T = cfg.grid, cfg.text_len
    r0, c0 = 0, 0
    tokens = torch.full((n, grid, grid), -1, dtype=torch.long, device=device)
    if image is not None:
        r0, c0 = check_region(region, grid)
        if isinstance(image, torch.Tensor) and image.shape[-1:] == (grid * grid,):
            image = image.unflatten(-1, (grid, grid))
        tokens = _batch_of(image, n, (grid, grid), "image").to(device).clone()
        if ((tokens < 0) | (tokens >= cfg.image_vocab)).any():
            raise ValueError(f"image tokens must be in [0, {cfg.image_vocab})")
        tokens[:, r0:, c0:] = -1
    copies = 2 if params.guidance > 1 else 1
    ids = torch.cat(
        [text, torch.full((n, 1), cfg.image_bos, device=device), tokens.flatten(1)[:, model.order]],
        dim=1,
    )
    ids = ids.repeat(copies, 1)  # (copies*n, T+1+N): the stream inputs, then the last image token
    ids[n:, :T] = cfg.pad_id  # unconditional rows
    blocks = [(n, params.seed)] if blocks is None else _check_blocks(blocks, n)
    return _fill(model, ids, n, params, r0, c0, blocks)


def _check_blocks(blocks: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The (count, seed) blocks as a list; ValueError unless the counts are ints >= 1 summing to n."""
    blocks = [tuple(b) for b in blocks]
    if not all(len(b) == 2 and _is_int(b[0]) and b[0] >= 1 and _is_int(b[1]) for b in blocks):
        raise ValueError(f"blocks must be (count >= 1, seed) pairs of ints, got {blocks!r}")
    if sum(count for count, _ in blocks) != n:
        raise ValueError(f"the blocks' counts must sum to n = {n}, got {blocks!r}")
    return blocks


def check_region(region: object, grid: int) -> tuple[int, int]:
    """(row, col) of the top-left cell of a rectangle that reaches the bottom-right corner of a grid x grid
    token grid, as Python ints; ValueError saying what is wrong otherwise."""
    pair = isinstance(region, (tuple, list)) and len(region) == 2
    if not (pair and all(_is_int(v) or isinstance(v, np.integer) for v in region)):
        raise ValueError(f"region must be (row, col) of token cells, got {region!r}")
    r, c = int(region[0]), int(region[1])
    if not (0 <= r < grid and 0 <= c < grid):
        raise ValueError(f"region row and col must be between 0 and {grid - 1}, got ({r}, {c})")
    return r, c


def generate(
    model: DalleTransformer,
    text: torch.Tensor,
    n: int,
    params: SamplingParams = SamplingParams(),
    *,
    image: torch.Tensor | None = None,
    region: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The finished LongTensor (n, grid, grid) of ``stream`` with the same arguments."""
    *_, grids = stream(model, text, n, params, image=image, region=region)
    return grids


def _fill(
    model: DalleTransformer,
    ids: torch.Tensor,
    n: int,
    params: SamplingParams,
    r0: int,
    c0: int,
    blocks: list[tuple[int, int]],
) -> Iterator[torch.Tensor]:
    """Samples the cells (r >= r0, c >= c0) of the streams ids (rows, T+1+N) in place, in stream order, yielding
    the grids after every `grid` image positions (a row, in raster order)."""
    cfg = model.config
    grid, T = cfg.grid, cfg.text_len
    generators = [
        (count, torch.Generator(device=ids.device).manual_seed(seed)) for count, seed in blocks
    ]
    top_k = min(params.top_k or cfg.image_vocab, cfg.image_vocab)
    sampled = _in_rectangle(model, r0, c0).tolist()  # per image position
    first = sampled.index(True)  # the first sampled token; position T+j predicts token j
    step = None
    for start in range(first - first % grid, cfg.image_tokens, grid):
        # Inference mode is entered per row, and the row is yielded outside it: it is thread-wide state,
        # and a `with` suspended across a yield would leave the caller's own code in inference mode.
        with _inference(model):
            for j in range(max(start, first), start + grid):
                if step is None:
                    step, logits = _prefill(model, ids[:, : T + j + 1])
                else:
                    logits = step(ids[:, T + j], T + j)
                if sampled[j]:  # in the rectangle: sample it (else it is given)
                    ids[:, T + 1 + j] = _pick(logits, n, params, top_k, generators).repeat(
                        len(ids) // n
                    )
        grids = torch.empty_like(ids[:n, T + 1 :])
        grids[:, model.order] = ids[:n, T + 1 :]  # (n, N) in raster order
        yield grids.view(n, grid, grid)


def stream_length(model: DalleTransformer, region: tuple[int, int] | None = None) -> int:
    """How many grids `stream` yields: one per `grid` image positions from the row of the first sampled one."""
    cfg = model.config
    r0, c0 = (0, 0) if region is None else check_region(region, cfg.grid)
    first = int(_in_rectangle(model, r0, c0).nonzero()[0, 0])
    return cfg.grid - first // cfg.grid


def _in_rectangle(model: DalleTransformer, r0: int, c0: int) -> torch.Tensor:
    """Whether the cell of each image position of the stream is in the rectangle from (r0, c0) to the
    bottom-right corner (N,)."""
    cells = model.order  # (N,)
    return (cells // model.config.grid >= r0) & (cells % model.config.grid >= c0)


def _prefill(model: DalleTransformer, prefix: torch.Tensor) -> tuple[DecodeStep, torch.Tensor]:
    """The decoding step after the prefix ids (rows, p), and the image logits (rows, V) at its end.

    Consecutive rows with equal prefixes (the candidates of one caption, the unconditional rows) form runs, and
    the prefix is computed and kept once per group of g rows, g the greatest common divisor of the runs' lengths
    (n for the candidates of one caption; a request's rows when requests of equal sizes share the call)."""
    starts = (prefix[1:] != prefix[:-1]).any(1).nonzero().flatten().add(1).tolist()
    bounds = [0, *starts, len(prefix)]
    group = math.gcd(*(end - start for start, end in pairwise(bounds)))
    cache = model.new_cache(len(prefix) // group, room=prefix.shape[1])
    h = model.forward_stream(prefix[::group], 0, cache)[:, -1]  # (U, C)
    step = DecodeStep(model, _compute_dtype(model), cache, len(prefix))
    return step, model.image_head(h).repeat_interleave(group, 0)


def _pick(
    logits: torch.Tensor,
    n: int,
    params: SamplingParams,
    top_k: int,
    generators: list[tuple[int, torch.Generator]],
) -> torch.Tensor:
    """Samples one token per candidate (n,) from image logits (copies*n, V), each block of (count, generator)
    candidates with its own generator."""
    logits = logits.float()
    if len(logits) > n:
        cond, uncond = logits[:n], logits[n:]
        logits = uncond + params.guidance * (cond - uncond)  # (n, V)
    if params.temperature != 1:
        logits = logits / params.temperature
    index = None
    if top_k < logits.shape[1] or params.top_p < 1:
        logits, index = logits.topk(top_k)  # (n, k), sorted in decreasing order
    probs = logits.softmax(-1)
    if params.top_p < 1:
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= params.top_p, 0.0)
    # torch.multinomial's draw of one sample (the same exponential race and random stream), without its checks
    race = torch.cat(
        [
            probs.new_empty(count, probs.shape[1]).exponential_(generator=generator)
            for count, generator in generators
        ]
    )
    choice = probs.div_(race).argmax(-1, keepdim=True)  # (n, 1)
    return (choice if index is None else index.gather(1, choice)).view(-1)


def _compute_dtype(model: DalleTransformer) -> torch.dtype:
    """The autocast dtype where autocast is on for the model's device, else the parameters' dtype."""
    device = model.image_head.weight.device.type
    return (
        torch.get_autocast_dtype(device)
        if torch.is_autocast_enabled(device)
        else model.image_head.weight.dtype
    )


def _batch_of(x: torch.Tensor, n: int, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """x of shape ``shape``, (1, *shape) or (n, *shape) as an (n, *shape) long tensor."""
    if not isinstance(x, torch.Tensor) or x.dtype not in (
        torch.long,
        torch.int32,
        torch.int16,
        torch.uint8,
    ):
        raise ValueError(f"{name} must be an integer tensor")
    if tuple(x.shape) == shape:
        x = x[None]
    if x.shape[1:] != shape or x.shape[0] not in (1, n):
        raise ValueError(
            f"{name} must have shape {shape}, (1, ...) or ({n}, ...), got {tuple(x.shape)}"
        )
    return x.long().expand(n, *shape)


@contextmanager
def _inference(model: DalleTransformer) -> Iterator[None]:
    """Runs the body in inference mode with the model in eval mode, restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
