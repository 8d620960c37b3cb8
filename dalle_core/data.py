"""Training data: the shapes world, or a folder of image + caption pairs, streamed in batches.

Batch k of a run is a pure function of (seed, rank, k), so a resumed run sees exactly the
batches an uninterrupted one would, whatever the number of loader workers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import world, world2
from .images import stack, to_square
from .layouts import caption_of_layout
from .world import caption_of

VAL_BASE = 1_000_000_000  # world scenes with seeds from here on are held out for validation
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Source(Protocol):
    """Where (image, caption) pairs come from."""

    size: int

    @property
    def key(self) -> str:
        """A string that changes whenever the pairs drawn would (caches of them are keyed by it)."""
        ...

    def draw(self, rng: random.Random) -> tuple[np.ndarray, str]: ...

    def validation(self, n: int) -> list[tuple[np.ndarray, str]]: ...

    def captions(self, n: int) -> list[str]: ...

    def judged_captions(self, n: int) -> list[str]:
        """The captions that images generated for the first n validation captions are judged against."""
        ...


@dataclass
class ShapesWorld:
    """The procedural shapes world at `size` pixels."""

    size: int = 64

    @property
    def key(self) -> str:
        return f"shapes world v1, {self.size} px"

    def draw(self, rng: random.Random) -> tuple[np.ndarray, str]:
        s = world.sample(rng.randrange(VAL_BASE), self.size)
        return s.image, s.caption

    def validation(self, n: int) -> list[tuple[np.ndarray, str]]:
        """The fixed held-out scenes 0..n-1 (seeds never drawn for training)."""
        return [
            (s.image, s.caption) for s in (world.sample(VAL_BASE + i, self.size) for i in range(n))
        ]

    def captions(self, n: int) -> list[str]:
        rng = random.Random(0)
        return [world.sample_scene(rng)[1] for _ in range(n)]

    def judged_captions(self, n: int) -> list[str]:
        return [caption for _, caption in self.validation(n)]


@dataclass
class ShapesWorld2:
    """The second edition's stream (`world2.sample2`) at `size` pixels: single scenes and layouts with
    paraphrased captions, never a held-out color-shape pair."""

    size: int = 96

    def __post_init__(self) -> None:
        world2.check_stream_side(self.size)

    @property
    def key(self) -> str:
        return f"shapes world v2, {self.size} px"

    def draw(self, rng: random.Random) -> tuple[np.ndarray, str]:
        s = world2.sample2(rng.randrange(VAL_BASE), self.size)
        return s.image, s.caption

    def validation(self, n: int) -> list[tuple[np.ndarray, str]]:
        """The fixed held-out draws 0..n-1 (seeds never drawn for training)."""
        return [
            (s.image, s.caption)
            for s in (world2.sample2(VAL_BASE + i, self.size) for i in range(n))
        ]

    def captions(self, n: int) -> list[str]:
        return [world2.sample2(i, self.size).caption for i in range(n)]

    def judged_captions(self, n: int) -> list[str]:
        """The canonical caption of each validation draw (the evaluator reads no paraphrases)."""
        draws = (world2.sample2(VAL_BASE + i, self.size) for i in range(n))
        return [
            caption_of(s.expectation) if s.kind == "scene" else caption_of_layout(s.said)
            for s in draws
        ]


class DatasetError(ValueError):
    """A folder that cannot be used as a dataset."""


class ImageFolder:
    """A folder of images, each with a same-stem `.txt` file of captions (one per line).

    Files whose image cannot be read or that have no caption are skipped and listed in
    `skipped`; 1 in `holdout` pairs (chosen by file name) is kept for validation.
    """

    def __init__(self, root: str | Path, size: int = 64, holdout: int = 20):
        self.root, self.size = Path(root), size
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a folder")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{self.root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.skipped: dict[str, list[str]] = {
            "no caption file": [],
            "empty caption file": [],
            "unreadable image": [],
        }
        pairs = []
        for path in files:
            txt = path.with_suffix(".txt")
            if not txt.exists():
                self.skipped["no caption file"].append(path.name)
                continue
            text = txt.read_text(encoding="utf-8", errors="replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if not lines:
                self.skipped["empty caption file"].append(path.name)
                continue
            try:
                with Image.open(path) as im:
                    im.verify()
            except Exception:
                self.skipped["unreadable image"].append(path.name)
                continue
            pairs.append((path, lines))
        if not pairs:
            raise DatasetError(f"no usable image + caption pairs in {self.root}: {self.summary()}")
        held = [
            p for p in pairs if int(hashlib.md5(p[0].name.encode()).hexdigest(), 16) % holdout == 0
        ]
        self.val = held if len(held) < len(pairs) else []
        self.train = [p for p in pairs if p not in self.val] if self.val else pairs

    @property
    def key(self) -> str:
        """The folder, the image size, and every used file's name, size and modification time."""
        digest = hashlib.sha256(f"{self.root.resolve()}|{self.size}".encode())
        for path, _ in sorted(self.train + self.val):
            for file in (path, path.with_suffix(".txt")):
                stat = file.stat()
                digest.update(
                    f"|{file.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
        return f"image folder {self.root}, {self.size} px, {digest.hexdigest()[:16]}"

    def summary(self) -> str:
        """What was used and what was skipped, in one line."""
        n = len(getattr(self, "train", [])) + len(getattr(self, "val", []))
        skipped = "; ".join(
            f"{len(v)} with {k} (e.g. {v[0]})" for k, v in self.skipped.items() if v
        )
        return f"{n} pairs used" + (f"; skipped {skipped}" if skipped else "")

    def _load(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return to_square(im, self.size)
        except Exception as e:
            raise DatasetError(f"cannot read image {path}: {e}") from e

    def draw(self, rng: random.Random) -> tuple[np.ndarray, str]:
        path, lines = rng.choice(self.train)
        return self._load(path), rng.choice(lines)

    def validation(self, n: int) -> list[tuple[np.ndarray, str]]:
        return [(self._load(p), lines[0]) for p, lines in self.val[:n]]

    def judged_captions(self, n: int) -> list[str]:
        return [lines[0] for _, lines in self.val[:n]]

    def captions(self, n: int) -> list[str]:
        return [line for _, lines in self.train for line in lines][:n]


def open_source(data: str, size: int = 64) -> Source:
    """`"shapes"` for the shapes world, `"shapes2"` for its second edition, else the path of an image folder."""
    if data == "shapes":
        return ShapesWorld(size)
    return ShapesWorld2(size) if data == "shapes2" else ImageFolder(data, size)


def stream_seed(seed: int, rank: int, k: int) -> int:
    """The integer seed of draw k of process `rank` in a run seeded `seed` (distinct for every (rank, k))."""
    return seed * 1_000_003 + rank * 1_000_000_007 + k


def make_batch(
    source: Source, batch_size: int, seed: int, rank: int, k: int
) -> tuple[torch.Tensor, list[str]]:
    """Batch number k: images uint8 (B, 3, S, S) and B captions."""
    rng = random.Random(f"{seed}/{rank}/{k}")
    pairs = [source.draw(rng) for _ in range(batch_size)]
    images = stack([p[0] for p in pairs])
    return images, [p[1] for p in pairs]


class Batches(IterableDataset):
    """Batches start, start+1, ... forever; loader workers take turns, so order is kept."""

    def __init__(
        self, source: Source, batch_size: int, seed: int = 0, rank: int = 0, start: int = 0
    ):
        self.source, self.batch_size, self.seed, self.rank, self.start = (
            source,
            batch_size,
            seed,
            rank,
            start,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        k = self.start + worker
        while True:
            yield make_batch(self.source, self.batch_size, self.seed, self.rank, k)
            k += workers


def batch_loader(
    source: Source, batch_size: int, seed: int = 0, rank: int = 0, start: int = 0, workers: int = 1
) -> DataLoader:
    """An endless loader of `Batches` (workers=0 draws in the main process)."""
    return DataLoader(
        Batches(source, batch_size, seed, rank, start),
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )


def validation_batch(source: Source, n: int) -> tuple[torch.Tensor, list[str]]:
    """The first n held-out pairs as one batch: images uint8 (n, 3, S, S) and captions."""
    pairs = source.validation(n)
    if not pairs:
        raise DatasetError("the dataset has no held-out pairs for validation")
    return stack([p[0] for p in pairs]), [p[1] for p in pairs]
