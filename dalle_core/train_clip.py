"""Training the contrastive scorer: CLIP's symmetric InfoNCE, plus hard negatives from the world's grammar.

In-batch negatives alone teach a bag of words: a batch rarely holds both "a red circle left
of a blue square" and its swaps, so nothing forces the model to bind colors to shapes or
to read positions. For shapes-world batches each image therefore also brings up to
`ClipRecipe.negatives` captions of its own scene that are false (`hard_negatives`): colors
swapped, relation reversed, count off by one, a shape replaced, the background changed,
the position moved. They are extra rows on the text side of the batch:

    logits = images (B) x texts (B true captions, then N hard negatives)    # (B, B + N)
    loss = (CE over each image's row, target its caption               # B + N candidates
            + CE over each true caption's column of the B images) / 2   # the negatives belong to no image

With N = 0 this is exactly CLIP's loss. A folder of images has no scenes, so it trains
with in-batch negatives only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import combinations, count
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from . import world
from .checkpoint import save_model
from .clip import Clip, check_tokenizer
from .data import VAL_BASE, ShapesWorld, ShapesWorld2, Source, batch_loader, validation_batch
from .device import autocast
from .images import stack
from .text import TextTokenizer
from .training import TrainArgs
from .world import (
    BACKGROUNDS,
    COLORS,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
    SIZE_WORDS,
    WHERE,
    Expectation,
    Group,
    Scene,
    caption_of,
    check,
    parse_caption,
)

KINDS = ("color_swap", "relation", "count", "shape", "background", "position")
KINDS2 = ("direction", "transform", "rule")  # the second edition's kinds (`negatives2`)
RETRIEVAL_PAIRS = 256  # held-out pairs for the top-1 retrieval metrics

# ----------------------------------------------------------------------------- hard negatives

Edit = Callable[[Expectation, Scene, random.Random], list[Expectation]]
_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def shuffled(items: list, rng: random.Random) -> list:
    rng.shuffle(items)
    return items


def regroup(e: Expectation, i: int, **changes) -> Expectation:
    """`e` with group i changed."""
    groups = list(e.groups)
    groups[i] = replace(groups[i], **changes)
    return replace(e, groups=tuple(groups))


def _colors_of(g: Group, scene: Scene) -> set[str]:
    """The colors group `g` may have in the scene: the stated one, else those of the objects of its shape."""
    return {g.color} if g.color else {o.color for o in scene.objects if o.shape == g.shape}


def _color_swap(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """Two groups with their (stated or actual) colors exchanged; failing that, one group given another color."""
    swaps = [
        regroup(regroup(e, i, color=cj), j, color=ci)
        for i, j in combinations(range(len(e.groups)), 2)
        for ci in sorted(_colors_of(e.groups[i], scene))
        for cj in sorted(_colors_of(e.groups[j], scene))
        if ci != cj
    ]
    recolors = [
        regroup(e, i, color=c) for i, g in enumerate(e.groups) for c in COLORS if c != g.color
    ]
    return shuffled(swaps, rng) + shuffled(recolors, rng)


def _relation(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """The relation reversed (or the two objects exchanged); failing that, turned by a right angle."""
    if not e.relation:
        return []
    direction = RELATIONS[e.relation]
    reversed_ = [replace(e, relation=p) for p, d in RELATIONS.items() if d == _OPPOSITE[direction]]
    reversed_ += [
        replace(e, groups=e.groups[::-1], relation=p)
        for p, d in RELATIONS.items()
        if d == direction
    ]
    turned = [
        replace(e, relation=p)
        for p, d in RELATIONS.items()
        if d not in (direction, _OPPOSITE[direction])
    ]
    return shuffled(reversed_, rng) + shuffled(turned, rng)


def _article(old: str, n: int, rng: random.Random) -> str:
    """How to say a count of n for a group that used `old`: digits stay digits, words stay words."""
    if n == 1:
        return "a"
    choices = [w for w, v in NUMBER_WORDS.items() if v == n]
    same_style = [w for w in choices if old in NUMBER_WORDS and w.isdigit() == old.isdigit()]
    return same_style[0] if same_style else rng.choice(choices)


def _count(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """One group with one object more or less (a relation or position cannot hold a count, so it is dropped)."""
    out = []
    for i, g in enumerate(e.groups):
        for delta in (1, -1):
            if not 1 <= e.n_objects + delta <= 4:
                continue
            if g.count + delta == 0:
                groups = e.groups[:i] + e.groups[i + 1 :]
            else:
                groups = regroup(
                    e,
                    i,
                    count=g.count + delta,
                    article=_article(g.article, g.count + delta, rng),
                    where=None,
                ).groups
            out.append(replace(e, groups=groups, relation=None))
    return shuffled(out, rng)


def _shape(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """One group's shape replaced by another."""
    return shuffled(
        [regroup(e, i, shape=s) for i, g in enumerate(e.groups) for s in SHAPES if s != g.shape],
        rng,
    )


def _background(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """Another background stated (whether or not the caption stated one)."""
    return shuffled([replace(e, background=b) for b in BACKGROUNDS if b != scene.background], rng)


def _position(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """A lone object's stated position moved to another cell of the grid of thirds."""
    g = e.groups[0]
    return shuffled([regroup(e, 0, where=w) for w in WHERE if w != g.where], rng) if g.where else []


EDITS: dict[str, Edit] = {
    "color_swap": _color_swap,
    "relation": _relation,
    "count": _count,
    "shape": _shape,
    "background": _background,
    "position": _position,
}


def _with_size_words(e: Expectation, caption: str) -> Expectation:
    """`e` with each group's size said as in the caption ("big", "tiny", ...), so negatives keep its wording."""
    words = iter(w for w in caption.lower().split() if w in SIZE_WORDS)
    return replace(e, groups=tuple(replace(g, size=next(words)) if g.size else g for g in e.groups))


def hard_negatives(caption: str, scene: Scene, rng: random.Random) -> dict[str, str]:
    """Captions close to `caption` that are false for `scene` (which it describes), at most one per kind.

    Kinds (`KINDS`) that do not apply are absent: "relation" needs a relation, "position" a
    stated position. Every negative is in the grammar and judged false for the scene by
    `world.check`, so none is accidentally true (swapping two red objects' colors, say).
    """
    e = _with_size_words(parse_caption(caption), caption)
    return {kind: caption_of(c) for kind, c in false_edits(e, scene, rng, EDITS).items()}


def false_edits(
    e: Expectation, scene: Scene, rng: random.Random, edits: dict[str, Edit]
) -> dict[str, Expectation]:
    """For each kind of edit, the first of its candidates (in the edit's shuffled order) whose caption is false
    for `scene` by `world.check`; kinds with none are absent."""
    out = {}
    for kind, edit in edits.items():
        for candidate in edit(e, scene, rng):
            if not check(scene, parse_caption(caption_of(candidate)))[0]:
                out[kind] = candidate
                break
    return out


# ----------------------------------------------------------------------------- negative images


def with_objects(scene: Scene, changes: dict[int, world.Obj]) -> Scene:
    """`scene` with the objects at some indices replaced."""
    return replace(scene, objects=tuple(changes.get(k, o) for k, o in enumerate(scene.objects)))


def scene_edits(scene: Scene) -> dict[str, list[Scene]]:
    """Scenes that differ from `scene` in one way, by kind (no box moves or changes size, so all are valid)."""
    objs = scene.objects
    pairs = [(i, j, objs[i], objs[j]) for i, j in combinations(range(len(objs)), 2)]
    return {
        "color_swap": [
            with_objects(scene, {i: replace(a, color=b.color), j: replace(b, color=a.color)})
            for i, j, a, b in pairs
            if a.color != b.color
        ],
        "object_swap": [
            with_objects(
                scene,
                {
                    i: replace(a, shape=b.shape, color=b.color),
                    j: replace(b, shape=a.shape, color=a.color),
                },
            )
            for i, j, a, b in pairs
            if (a.shape, a.color) != (b.shape, b.color)
        ],
        "mirror": [
            with_objects(scene, {k: replace(o, cx=1 - o.cx) for k, o in enumerate(objs)}),
            with_objects(scene, {k: replace(o, cy=1 - o.cy) for k, o in enumerate(objs)}),
        ],
        "shape": [
            with_objects(scene, {i: replace(o, shape=s)})
            for i, o in enumerate(objs)
            for s in SHAPES
            if s != o.shape
        ],
    }


def negative_scenes(caption: str, scene: Scene, rng: random.Random) -> dict[str, Scene]:
    """Scenes close to `scene` for which `caption` is false, at most one per kind: two objects' colors
    exchanged ("color_swap"), two objects' shapes and colors exchanged ("object_swap"), the scene
    mirrored left-right or top-bottom ("mirror"), one object's shape replaced ("shape").

    Text negatives alone cannot teach binding: while the image embedding is a bag of features, a
    caption and its swap get the same score and the text encoder has nothing to learn from (and
    the other way round). An image that differs only in binding breaks that tie on the image side.
    """
    return false_scenes(parse_caption(caption), scene_edits(scene), rng)


def false_scenes(
    e: Expectation, candidates: dict[str, list[Scene]], rng: random.Random
) -> dict[str, Scene]:
    """For each kind, a candidate scene (in a shuffled order) for which `e` is false; kinds with none are absent."""
    out = {}
    for kind, scenes in candidates.items():
        found = next((c for c in shuffled(scenes, rng) if not check(c, e)[0]), None)
        if found is not None:
            out[kind] = found
    return out


# ----------------------------------------------------------------------------- objective and data


@dataclass
class ClipBatch:
    """`pairs` matching (image, caption) pairs, then hard negatives: images uint8 (pairs + M, 3, S, S),
    ids (pairs + N, T); `image_owner` (M,) and `text_owner` (N,) name the pair each negative belongs to."""

    images: torch.Tensor
    ids: torch.Tensor
    image_owner: torch.Tensor
    text_owner: torch.Tensor

    @property
    def pairs(self) -> int:
        return len(self.images) - len(self.image_owner)


def contrastive_loss(logits: torch.Tensor, pairs: int) -> torch.Tensor:
    """CLIP's symmetric InfoNCE on image-by-text logits (pairs + M, pairs + N): image i matches
    text i for i < pairs; the other rows and columns are hard negatives, which match nothing."""
    target = torch.arange(pairs, device=logits.device)
    return (
        F.cross_entropy(logits[:pairs], target) + F.cross_entropy(logits[:, :pairs].T, target)
    ) / 2


def hard_negative_loss(logits: torch.Tensor, pairs: int, text_owner: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image over its caption and its own negative captions only (a softmax of a
    few minimal pairs instead of the whole batch): logits (pairs + M, pairs + N), `text_owner` (N,) the
    pair each negative caption belongs to. Images without negatives add zero.

    There is no such term for negative images: while the image encoder cannot tell a scene from its
    swap, its two-way softmax pulls them apart with a gradient as strong as it is blind, which stalls
    training; in the contrastive softmax they are one candidate among many."""
    own = text_owner[None, :] == torch.arange(pairs, device=logits.device)[:, None]  # (pairs, N)
    choices = torch.cat(
        [
            logits[:pairs, :pairs].diagonal()[:, None],
            logits[:pairs, pairs:].masked_fill(~own, float("-inf")),
        ],
        dim=1,
    )
    return F.cross_entropy(choices, torch.zeros(pairs, dtype=torch.long, device=logits.device))


def world_batch(
    batch_size: int, seed: int, rank: int, k: int, size: int = 64
) -> tuple[torch.Tensor, list[str], list[Scene]]:
    """Batch number k of the shapes world with its scenes: the pairs of
    `data.make_batch(ShapesWorld(size), batch_size, seed, rank, k)`, and what each image shows."""
    rng = random.Random(f"{seed}/{rank}/{k}")
    samples = [world.sample(rng.randrange(VAL_BASE), size) for _ in range(batch_size)]
    images = stack([s.image for s in samples])
    return images, [s.caption for s in samples], [s.scene for s in samples]


def with_negatives(
    images: torch.Tensor,
    captions: list[str],
    scenes: list[Scene],
    texts: int,
    pictures: int,
    rng: random.Random,
) -> tuple[torch.Tensor, list[str], list[int], list[int]]:
    """A batch grown by up to `texts` negative captions and `pictures` negative images per pair,
    of distinct kinds drawn at random: (all images, all captions, image owners, text owners)."""
    size = images.shape[-1]
    negative_texts, negative_images, text_owner, image_owner = [], [], [], []
    for i, (caption, scene) in enumerate(zip(captions, scenes, strict=True)):
        options = list(hard_negatives(caption, scene, rng).values())
        chosen = rng.sample(options, min(texts, len(options)))
        negative_texts += chosen
        text_owner += [i] * len(chosen)
        options = list(negative_scenes(caption, scene, rng).values())
        chosen = rng.sample(options, min(pictures, len(options)))
        negative_images += [world.render(c, size) for c in chosen]
        image_owner += [i] * len(chosen)
    if negative_images:
        extra = stack(negative_images)
        images = torch.cat([images, extra])
    return images, captions + negative_texts, image_owner, text_owner


def degrade(images: torch.Tensor, blur: float, noise: float) -> torch.Tensor:
    """Training images made a little like VAE reconstructions: a share `blur` of them blurred
    (a gaussian of 0.3-1 px), all with gaussian noise of std `noise`, clamped to [0, 1]."""
    if blur > 0:
        chosen = torch.rand(len(images), device=images.device) < blur
        if chosen.any():
            sigma = float(torch.empty(1).uniform_(0.3, 1.0))
            images = images.clone()
            images[chosen] = gaussian_blur(images[chosen], kernel_size=5, sigma=sigma)
    if noise > 0:
        images = images + noise * torch.randn_like(images)
    return images.clamp(0, 1)


# ----------------------------------------------------------------------------- the task


@dataclass
class ClipRecipe:
    """What the scorer trains on, besides the `TrainArgs`."""

    negatives: int = (
        3  # negative captions per pair (shapes world only; 0 for in-batch negatives only)
    )
    negative_images: int = 1  # negative images per pair (shapes world only)
    hard_weight: float = 1.0  # weight of `hard_negative_loss` beside the contrastive loss
    blur: float = 0.5  # share of training images blurred (see `degrade`)
    noise: float = 0.02  # std of the pixel noise added to training images
    val_pairs: int = (
        1024  # held-out pairs: hard-negative accuracy on all, retrieval on the first 256
    )


@dataclass
class ValidationSet:
    """Held-out images (uint8 (n, 3, S, S)), their captions, and the hard negatives of each (or none)."""

    images: torch.Tensor
    captions: list[str]
    negatives: list[dict[str, str]]


def validation_set(source: Source, n: int) -> ValidationSet:
    """The first n held-out pairs; for the shapes world (either edition) also the hard negatives of their scenes."""
    if isinstance(source, ShapesWorld):
        samples = [world.sample(VAL_BASE + i, source.size) for i in range(n)]
        images = stack([s.image for s in samples])
        negatives = [
            hard_negatives(s.caption, s.scene, random.Random(i)) for i, s in enumerate(samples)
        ]
        return ValidationSet(images, [s.caption for s in samples], negatives)
    if isinstance(source, ShapesWorld2):
        from .negatives2 import negative_captions  # negatives2 builds on this module
        from .world2 import sample2

        draws = [sample2(VAL_BASE + i, source.size) for i in range(n)]
        negatives = [negative_captions(s, random.Random(i)) for i, s in enumerate(draws)]
        return ValidationSet(stack([s.image for s in draws]), [s.caption for s in draws], negatives)
    images, captions = validation_batch(source, n)
    return ValidationSet(images, captions, [{} for _ in captions])


@torch.no_grad()
def clip_metrics(
    model: Clip, tokenizer: TextTokenizer, val: ValidationSet, bf16: bool = False, chunk: int = 256
) -> dict[str, float]:
    """Held-out metrics of a scorer, all in [0, 1]:

    * `neg_<kind>`: share of images scored higher with their caption than with its negative of that kind;
    * `i2t_top1` / `t2i_top1`: top-1 retrieval of the caption of each image among the first 256
      captions, and of the image of each caption among the first 256 images.
    """
    device = next(model.parameters()).device
    with autocast(device.type, bf16):

        def encode(fn, xs: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [fn(xs[i : i + chunk].to(device)) for i in range(0, len(xs), chunk)]
            ).cpu()

        image = encode(model.encode_image, val.images.float() / 255)
        texts = val.captions
        negs = [(i, kind, text) for i, d in enumerate(val.negatives) for kind, text in d.items()]
        text = encode(
            model.encode_text, tokenizer.encode_batch(texts + [t for _, _, t in negs], warn=False)
        )
    caption, negative = text[: len(texts)], text[len(texts) :]
    true = (image * caption).sum(-1)
    metrics = {}
    for kind in (*KINDS, *KINDS2):
        rows = [(j, i) for j, (i, k, _) in enumerate(negs) if k == kind]
        if rows:
            j, i = map(list, zip(*rows, strict=True))
            metrics[f"neg_{kind}"] = (
                (true[i] > (image[i] * negative[j]).sum(-1)).float().mean().item()
            )
    n = min(RETRIEVAL_PAIRS, len(texts))
    sims = image[:n] @ caption[:n].T
    target = torch.arange(n)
    metrics["i2t_top1"] = (sims.argmax(1) == target).float().mean().item()
    metrics["t2i_top1"] = (sims.argmax(0) == target).float().mean().item()
    return metrics


class ClipTask:
    """The `Task` that `training.train` runs for the scorer."""

    name = "clip"

    def __init__(
        self,
        model: Clip,
        source: Source,
        tokenizer: TextTokenizer,
        args: TrainArgs,
        recipe: ClipRecipe | None = None,
    ):
        self.model, self.source, self.tokenizer, self.args = model, source, tokenizer, args
        self.recipe = recipe or ClipRecipe()
        check_tokenizer(model.config, tokenizer, "the scorer")
        self.device = next(model.parameters()).device
        self.val = validation_set(source, self.recipe.val_pairs)

    def batches(self, start: int, rank: int = 0) -> Iterator[ClipBatch]:
        none = torch.zeros(0, dtype=torch.long)
        if not isinstance(self.source, (ShapesWorld, ShapesWorld2)):
            for images, captions in batch_loader(
                self.source,
                self.args.batch_size,
                self.args.seed,
                rank,
                start=start,
                workers=self.args.workers,
            ):
                yield self._to_device(
                    ClipBatch(images, self.tokenizer.encode_batch(captions, warn=False), none, none)
                )
            return
        from .negatives2 import with_negatives2, world2_batch  # negatives2 builds on this module

        r, size = self.recipe, self.source.size
        for k in count(start):
            rng = random.Random(f"{self.args.seed}/{rank}/{k}/negatives")
            if isinstance(self.source, ShapesWorld):
                images, captions, scenes = world_batch(
                    self.args.batch_size, self.args.seed, rank, k, size
                )
                images, texts, image_owner, text_owner = with_negatives(
                    images, captions, scenes, r.negatives, r.negative_images, rng
                )
            else:
                images, _, draws = world2_batch(self.args.batch_size, self.args.seed, rank, k, size)
                images, texts, image_owner, text_owner = with_negatives2(
                    images, draws, r.negatives, r.negative_images, rng
                )
            yield self._to_device(
                ClipBatch(
                    images,
                    self.tokenizer.encode_batch(texts, warn=False),
                    torch.tensor(image_owner, dtype=torch.long),
                    torch.tensor(text_owner, dtype=torch.long),
                )
            )

    def _to_device(self, b: ClipBatch) -> ClipBatch:
        return ClipBatch(
            *(t.to(self.device) for t in (b.images, b.ids, b.image_owner, b.text_owner))
        )

    def loss(self, batch: ClipBatch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = degrade(batch.images.float() / 255, self.recipe.blur, self.recipe.noise)
        logits = self.model(x, batch.ids)
        B = batch.pairs
        clip = contrastive_loss(logits, B)
        hard = hard_negative_loss(logits, B, batch.text_owner)
        accuracy = (
            (logits[:B, :B].argmax(1) == torch.arange(B, device=logits.device)).float().mean()
        )
        logs = {
            "loss": clip.item(),
            "hard": hard.item(),
            "acc": accuracy.item(),
            "scale": self.model.scale.item(),
        }
        return clip + self.recipe.hard_weight * hard, logs

    def validate(self, step: int, out: Path) -> dict[str, float]:
        return clip_metrics(self.model, self.tokenizer, self.val, self.args.bf16)

    def export(self, out: Path) -> None:
        save_model(out, "clip", self.model)


# ----------------------------------------------------------------------------- building and loading
