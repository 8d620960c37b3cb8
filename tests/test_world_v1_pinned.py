"""The first edition stays exactly as it was: digests of v1 samples, captions, parses, judgements and the v1
evaluation prompts, computed on the code before the second edition (commit b23ead3) and pinned here.

The parse and judge digests run on degraded renders (noise and blur, as a model's images are), so a
change in the evaluator's arithmetic anywhere shows, not only on clean renders.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
from scipy import ndimage

from dalle_core import report, world
from dalle_core.judge import judge_image, parse
from dalle_core.train_clip import hard_negatives, negative_scenes

PINNED = {
    "samples_64": "e02770f23f89ee00fb7fc45b5695acd23be3b6d3f74b4316a7928deb8fe831dd",
    "samples_96": "b80ecc0c8f06ea7a3a1804f35b1015f158075a8a5d98ca1b57bf8c1722969539",
    "captions": "fc71b37ccd6c776503beac9bf4cb387faa4728b1389878cd578a6fdecae6fb0d",
    "parse": "c310fc7a686d3d16ba26490f9005cf9f26ade73240147c5d15dc142fe4c64003",
    "judge": "a3ab5f32c4ddd342f9a2c120c4b6d876d4b573ab54de8b3d579cf227e90e2ccc",
    "prompts": "518eb0a89fed3ef186c7cc5eaa439886fa45492861683cf703fd46bcb9655906",
    "completion": "be81127ea160be4f94d2dfb51d1ebf2c59e76d18795ead2c879cb441c069fc15",
    "negatives": "14dd60631562d45abc7aada0592706ee82d08cde3c6cc73d1d12af7f880eeaa6",
}


def _digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()


def _degraded(image: np.ndarray, seed: int) -> np.ndarray:
    """A render blurred a little and given pixel noise, deterministically."""
    x = ndimage.uniform_filter(image.astype(np.float32), size=(2, 2, 1))
    x += np.random.default_rng(seed).normal(0.0, 10.0, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def _fields(e: world.Expectation) -> tuple:
    """An expectation as the v1 fields (the dataclasses' reprs may grow fields in later editions)."""
    return (
        [(g.shape, g.count, g.color, g.size, g.where, g.article) for g in e.groups],
        e.relation,
        e.background,
    )


def _objects(scene: world.Scene) -> tuple:
    return scene.background, [(o.shape, o.color, o.size, o.cx, o.cy, o.s) for o in scene.objects]


def v1_digests() -> dict[str, str]:
    """The digests that `PINNED` holds."""
    s64 = [world.sample(seed, 64) for seed in range(200)]
    s96 = [world.sample(seed, 96) for seed in range(50)]
    degraded = [_degraded(s.image, i) for i, s in enumerate(s64[:120])]
    v1 = list(report.CATEGORIES)
    completion = report.prompts("color_attr", 40, 1)
    return {
        "samples_64": _digest(p for s in s64 for p in (s.image.tobytes(), s.caption)),
        "samples_96": _digest(p for s in s96 for p in (s.image.tobytes(), s.caption)),
        "captions": _digest(_fields(world.parse_caption(s.caption)) for s in s64),
        "parse": _digest(_objects(parse(im)) for im in degraded),
        "judge": _digest(
            judge_image(im, c)
            for i, im in enumerate(degraded)
            for c in (s64[i].caption, s64[i + 1].caption)
        ),
        "prompts": _digest((c, report.prompts(c, 40, 0)) for c in v1),
        "completion": _digest(
            p
            for i, c in enumerate(completion)
            for p in (c, world.render(world.scene_for(c, seed=i)).tobytes())
        ),
        "negatives": _digest(
            p
            for i, s in enumerate(s64[:100])
            for p in (
                hard_negatives(s.caption, s.scene, random.Random(i)),
                sorted(
                    (k, _objects(v))
                    for k, v in negative_scenes(s.caption, s.scene, random.Random(i)).items()
                ),
            )
        ),
    }


def test_v1_is_unchanged():
    assert v1_digests() == PINNED
