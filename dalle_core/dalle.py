"""`Dalle`: the one object every front end uses (the app, the HTTP API, the CLI, the tests).

It loads the tokenizer, VAE, transformer and scorer from a checkpoint directory and turns
prompts into ranked images: sample candidates, decode them, score them against the prompt,
return the best first. Streaming variants yield partial images while the rows are sampled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, load_model
from .clip import Clip, load_clip
from .device import autocast, bf16_supported, resolve_device
from .images import to_float, to_square, to_uint8
from .judge import judge_image
from .sampling import SamplingParams, check_region, stream, stream_length
from .settings import DEFAULT_CHECKPOINT, SHARED_SETTINGS, Settings
from .text import TextTokenizer
from .transformer import load_transformer
from .vae import DiscreteVAE, VAEConfig
from .world import (
    BACKGROUNDS,
    COLORS,
    NUMBER_WORDS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZE_WORDS,
    WHERE,
    CaptionError,
)

PARTIAL_GRAY = 200  # pixels of rows not sampled yet, in streamed previews
# the most rows of a request whose previews are decoded (each decode costs about a tenth of the sampling): every
# row of an 8-row grid, the first and every second of a 12-row one; the other rows' updates have no previews
PREVIEWS = 8
_GLUE = {"to", "the", "of", "in", "on", "at"}
# how `Dalle.vocabulary` groups the shapes world's words for people, in the order they are listed
VOCABULARY_GROUPS = {
    "colours": list(COLORS),
    "shapes": [w for s in SHAPES for w in (s, PLURALS[s])],
    "sizes": list(SIZE_WORDS),
    "counts": ["a", "an", "one", *NUMBER_WORDS],
    "positions": list(
        dict.fromkeys(w for p in (*RELATIONS, *WHERE) for w in p.split() if w not in _GLUE)
    ),
    "backgrounds": list(BACKGROUNDS),
}


@dataclass
class Result:
    """One image, best first in a list, with its score against the prompt."""

    image: np.ndarray  # uint8 (S, S, 3)
    score: float


@dataclass(frozen=True)
class Part:
    """One prompt's share of `Dalle.generate_batch_stream`: how many candidates, drawn with which seed."""

    prompt: str
    candidates: int = 16
    seed: int = 0


@dataclass
class Progress:
    """A streamed update: partial previews of every candidate, then (last) the ranked results."""

    previews: list[np.ndarray]
    rows_done: int
    rows_total: int
    results: list[Result] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # unknown words, truncation

    @property
    def fraction(self) -> float:
        return self.rows_done / max(self.rows_total, 1)


class Dalle:
    """Tokenizer + VAE + transformer + scorer, loaded from one checkpoint directory.

    `checkpoint` defaults to the shipped one; `device` "auto" picks CUDA when there is one; `bf16`
    None uses bf16 autocast only where the hardware computes it natively (`bf16_supported`).
    """

    def __init__(
        self, checkpoint: str | Path | None = None, device: str = "auto", bf16: bool | None = None
    ):
        path = Path(checkpoint or DEFAULT_CHECKPOINT)
        if not path.is_dir():
            raise CheckpointError(
                f"no checkpoint directory at {path}: use the one shipped in assets/checkpoint, "
                "or train one with `dalle train all --out DIR`"
            )
        self.device = resolve_device(device)
        self.bf16 = bf16_supported(self.device) if bf16 is None else bf16
        self.checkpoint = path
        self.tokenizer = TextTokenizer.load(path)
        self.vae = load_model(path, "vae", DiscreteVAE, VAEConfig, self.device)
        self.transformer = load_transformer(path, self.tokenizer, self.vae.config, self.device)
        self.clip: Clip = load_clip(path, self.tokenizer, self.device)

    @property
    def image_size(self) -> int:
        return self.vae.config.image_size

    @property
    def grid(self) -> int:
        return self.vae.config.grid

    # ------------------------------------------------------------------ prompts

    def check_prompt(self, prompt: str) -> tuple[torch.Tensor, list[str]]:
        """Token ids of a prompt, and notes for the user (unknown words, truncation)."""
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError(
                "the prompt is empty: describe the image, e.g. 'a red circle above a blue square'"
            )
        try:
            prompt.encode("utf-8")
        except (
            UnicodeEncodeError
        ):  # lone surrogates: JSON "\ud800" escapes, undecodable command-line bytes
            raise ValueError(
                "the prompt is not valid Unicode text (it has unpaired surrogate characters)"
            ) from None
        ids, truncated = self._encode(prompt)
        notes = []
        unknown = self.tokenizer.unknown_words(prompt)
        if unknown:
            notes.append(
                "words the model never saw in training (left out): " + ", ".join(unknown[:20])
            )
        if truncated:
            notes.append(
                f"the prompt was cut to its first {self.tokenizer.length - 2} tokens: the model reads "
                f'only "{self.tokenizer.decode(ids)}"'
            )
        return ids, notes

    def _encode(self, prompt: str) -> tuple[torch.Tensor, bool]:
        """The token ids the model reads of a prompt: its known words only (`TextTokenizer.known_text`), so that
        a prompt generates as if its unknown words were absent; and whether they were truncated to fit."""
        return self.tokenizer.encode(self.tokenizer.known_text(prompt))

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of the prompt that never occurred in the training captions (generation leaves them out)."""
        return self.tokenizer.unknown_words(prompt)

    def kept_prompt(self, prompt: str) -> str | None:
        """What the model reads of a prompt too long for it: the text of its first `tokenizer.length - 2`
        tokens, its known words as the tokenizer normalises them (lower case, single spaces, no final
        punctuation), which may end inside a word; None when the whole prompt fits."""
        ids, truncated = self._encode(prompt)
        return self.tokenizer.decode(ids) if truncated else None

    @property
    def vocabulary(self) -> dict[str, list[str]]:
        """The words of the training captions, the only ones that have an effect, grouped for people: the
        shapes world's colours, shapes, sizes, counts, positions and backgrounds (`VOCABULARY_GROUPS`), then
        any "other" words (sorted); groups with no word the model knows are left out."""
        known = self.tokenizer.words
        groups = {
            name: [w for w in words if w in known] for name, words in VOCABULARY_GROUPS.items()
        }
        grouped = {w for words in groups.values() for w in words}
        groups["other"] = sorted(w for w in known if w not in grouped and w.isalnum())
        return {name: words for name, words in groups.items() if words}

    # ------------------------------------------------------------------ generation

    def generate(self, prompt: str, **settings) -> list[Result]:
        """The best `n` of `candidates` sampled images, best first (settings as in `Settings`)."""
        return _last(self._generate(prompt, settings, previews=False)).results

    def generate_stream(self, prompt: str, **settings) -> Iterator[Progress]:
        """Like `generate`, yielding progress after each sampled row, with previews of all candidates after the first
        and then after every row or every few rows (at most `PREVIEWS` a request); the last yield has results."""
        return self._generate(prompt, settings, previews=True)

    def _generate(self, prompt: str, settings: dict, previews: bool) -> Iterator[Progress]:
        s = Settings(**settings)
        ids, notes = self.check_prompt(prompt)
        tokens = stream(self.transformer, ids.to(self.device), s.candidates, _params(s))
        return _only(self._run(tokens, [(ids, s, notes)], rows=self.grid, previews=previews))

    def generate_batch_stream(
        self, parts: Sequence[Part], previews: bool = True, **settings
    ) -> Iterator[list[Progress]]:
        """Samples the candidates of several prompts in one pass: after each sampled row, one `Progress` per part
        (previews of its candidates, or none if not `previews`); in the last, each part's results are all its
        candidates, best first.

        `settings` (those of `SHARED_SETTINGS`, as in `Settings`) are shared; each part sets its own
        prompt, candidates and seed. A part's images are those of `generate_stream(part.prompt,
        candidates=part.candidates, seed=part.seed, **settings)`, up to rounding in the batched arithmetic.
        Input is checked when called (ValueError), not when iterated."""
        if not parts:
            raise ValueError("give at least one part to generate")
        if set(settings) - set(SHARED_SETTINGS):
            own = sorted(set(settings) - set(SHARED_SETTINGS))
            raise ValueError(f"each part sets its own {', '.join(own)}")
        jobs = []
        for part in parts:
            s = Settings(n=part.candidates, candidates=part.candidates, seed=part.seed, **settings)
            ids, notes = self.check_prompt(part.prompt)
            jobs.append((ids, s, notes))
        text = torch.cat([ids[None].expand(s.candidates, -1) for ids, s, _ in jobs])
        blocks = [(s.candidates, s.seed) for _, s, _ in jobs]
        tokens = stream(
            self.transformer, text.to(self.device), len(text), _params(jobs[0][1]), blocks=blocks
        )
        return self._run(tokens, jobs, rows=self.grid, previews=previews)

    def complete(
        self,
        image,
        prompt: str,
        region: tuple[int, int] | None = None,
        mask: np.ndarray | None = None,
        **settings,
    ) -> list[Result]:
        """Redraw the bottom-right token rectangle of `image` (given as (row, col) or a painted mask) to fit
        the prompt."""
        return _last(self._complete(image, prompt, region, mask, settings, previews=False)).results

    def complete_stream(
        self,
        image,
        prompt: str,
        region: tuple[int, int] | None = None,
        mask: np.ndarray | None = None,
        **settings,
    ) -> Iterator[Progress]:
        """Streaming `complete`: pixels outside the rectangle are the input's own."""
        return self._complete(image, prompt, region, mask, settings, previews=True)

    def _complete(
        self,
        image,
        prompt: str,
        region: tuple[int, int] | None,
        mask: np.ndarray | None,
        settings: dict,
        previews: bool,
    ) -> Iterator[Progress]:
        s = Settings(**settings)
        ids, notes = self.check_prompt(prompt)
        pixels = self.prepare_image(image)
        if (region is None) == (mask is None):
            raise ValueError(
                "give the region to redraw either as (row, col) or as a mask, not both"
            )
        if mask is not None:
            region = self.snap_mask(mask)
        r, c = self.check_region(region)
        with torch.inference_mode(), autocast(self.device, self.bf16):
            given = self.vae.encode(to_float(pixels[None]).to(self.device))  # (1, grid*grid)
        tokens = stream(
            self.transformer,
            ids.to(self.device),
            s.candidates,
            _params(s),
            image=given[0],
            region=(r, c),
        )
        return _only(
            self._run(
                tokens,
                [(ids, s, notes)],
                rows=stream_length(self.transformer, (r, c)),
                keep=(pixels, r, c),
                previews=previews,
            )
        )

    def prepare_image(self, image) -> np.ndarray:
        """Any PIL image or array (any size and mode) as RGB uint8 at the model's resolution."""
        if isinstance(image, np.ndarray):
            arr = image
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or arr.size == 0:
                raise ValueError(
                    f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
                )
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"an image array must hold numbers, got {arr.dtype}")
            if arr.dtype != np.uint8:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
            image = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        if not isinstance(image, Image.Image):
            raise ValueError(f"expected an image, got {type(image).__name__}")
        try:
            return to_square(image, self.image_size)
        except OSError as e:  # Pillow decodes lazily: a truncated or damaged file fails here
            raise ValueError(f"the image could not be read ({e})") from None

    def snap_mask(self, mask: np.ndarray) -> tuple[int, int]:
        """The (row, col) of the smallest bottom-right token rectangle that covers a painted mask (any size)."""
        m = np.asarray(mask)
        if m.dtype.kind not in "biuf":
            raise ValueError(f"a mask must hold numbers, got {m.dtype}")
        if m.ndim == 3:
            m = m[..., -1] if m.shape[-1] in (2, 4) else m.max(-1)
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"a mask must be a 2-D array, got shape {np.asarray(mask).shape}")
        painted = m > 0
        if not painted.any():
            raise ValueError("the mask marks nothing to edit: paint over the area to redraw")
        h, w = painted.shape
        ys, xs = np.nonzero(painted)
        row = int(ys.min() * self.grid // h)
        col = int(xs.min() * self.grid // w)
        return row, col

    def check_region(self, region: object) -> tuple[int, int]:
        """(row, col) of a token rectangle to redraw, as ints; ValueError unless it is on the grid."""
        return check_region(region, self.grid)

    def rectangle_pixels(self, region: tuple[int, int]) -> tuple[int, int]:
        """The top-left pixel (y, x) of a token rectangle."""
        f = self.vae.config.f
        return region[0] * f, region[1] * f

    # ------------------------------------------------------------------ scoring

    def judge(self, image: np.ndarray, prompt: str) -> tuple[bool, str] | None:
        """Whether a uint8 (S, S, 3) image shows what the prompt says, read off its pixels by the shapes
        world's judge (`judge.judge_image`: a scene, a triangle's direction, a pair, an analogy, a matrix):
        (True, "ok") or (False, why not). None when the prompt is not a caption of the world's grammar, the
        only kind the judge can check.

        Unlike `score`, which only ranks candidates for one prompt, this is a plain pass or fail."""
        try:
            return judge_image(image, prompt)
        except CaptionError:
            return None

    def score(self, images: list[np.ndarray], prompt: str) -> list[float]:
        """The scorer's similarity of each uint8 image to the prompt (higher is better)."""
        ids, _ = self.check_prompt(prompt)
        with torch.inference_mode(), autocast(self.device, self.bf16):
            return (
                self.clip.score(to_float(np.stack(images)).to(self.device), ids.to(self.device))
                .float()
                .tolist()
            )

    def _run(
        self,
        tokens: Iterator[torch.Tensor],
        jobs: list[tuple[torch.Tensor, Settings, list[str]]],
        rows: int,
        keep: tuple[np.ndarray, int, int] | None = None,
        *,
        previews: bool,
    ) -> Iterator[list[Progress]]:
        """Progress of each job (prompt ids, settings, notes; their candidates in this order in `tokens`) after each
        sampled row (images decoded only if `previews`, on at most `PREVIEWS` rows), then the ranked results."""
        t0 = time.perf_counter()
        done = 0
        splits = [s.candidates for _, s, _ in jobs]
        for grids in tokens:  # (candidates, grid, grid), -1 where not sampled yet: a row at a time
            done += 1
            if done < rows:
                seconds = time.perf_counter() - t0
                images = (  # rows not sampled yet are gray
                    np.split(self._decode(grids, keep), np.cumsum(splits)[:-1])
                    if previews and (done == 1 or done % -(-rows // PREVIEWS) == 0)
                    else [[] for _ in jobs]
                )
                yield [
                    Progress(list(part), done, rows, seconds=seconds, notes=notes)
                    for part, (_, _, notes) in zip(images, jobs, strict=True)
                ]
                continue
            images = np.split(self._decode(grids, keep), np.cumsum(splits)[:-1])
            updates = []
            for part, (ids, s, notes) in zip(images, jobs, strict=True):
                with torch.inference_mode(), autocast(self.device, self.bf16):
                    scores = (
                        self.clip.score(to_float(part).to(self.device), ids.to(self.device))
                        .float()
                        .cpu()
                    )
                order = torch.argsort(scores, descending=True)[: s.n].tolist()
                results = [Result(part[i], float(scores[i])) for i in order]
                seconds = time.perf_counter() - t0
                updates.append(Progress(list(part), done, rows, results, seconds, notes))
            yield updates

    def _decode(self, grids: torch.Tensor, keep: tuple[np.ndarray, int, int] | None) -> np.ndarray:
        """Images (B, S, S, 3) of grids (B, g, g) with -1 where not sampled yet, whose cells stay gray; rows below
        the last that holds a token are not decoded, which halves the cost of the previews."""
        filled = (grids >= 0).any(-1).any(0)  # (g,): rows holding a token
        rows = int(filled.nonzero().max()) + 1 if filled.any() else 1
        with torch.inference_mode(), autocast(self.device, self.bf16):
            top = to_uint8(self.vae.decode(grids[:, :rows].clamp(min=0)))  # (B, rows * f, S, 3)
        f = self.image_size // self.grid
        unknown = (
            (grids[:, :rows] < 0).repeat_interleave(f, 1).repeat_interleave(f, 2)
        )  # (B, rows*f, S)
        top[unknown.cpu().numpy()] = PARTIAL_GRAY
        images = np.full(
            (len(grids), self.image_size, self.image_size, 3), PARTIAL_GRAY, dtype=np.uint8
        )
        images[:, : top.shape[1]] = top
        if keep is not None:
            pixels, r, c = keep
            y, x = self.rectangle_pixels((r, c))
            out = np.repeat(pixels[None], len(images), axis=0)
            out[:, y:, x:] = images[:, y:, x:]
            images = out
        return images


def _only(updates: Iterator[list[Progress]]) -> Iterator[Progress]:
    """The progress of a run with one job."""
    for (update,) in updates:
        yield update


def _last(progress: Iterator[Progress]) -> Progress:
    last = None
    for update in progress:
        last = update
    return last


def _params(s: Settings) -> SamplingParams:
    return SamplingParams(
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, guidance=s.guidance, seed=s.seed
    )
