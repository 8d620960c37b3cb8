"""Renders stay pixel for pixel what they were: digests of layouts, the v2 stream and free-form scenes, computed
on the renderer before it was made faster (commit 46215cd) and pinned here (v1 samples are pinned in
`test_world_v1_pinned.py`)."""

from __future__ import annotations

import hashlib
import random

from dalle_core.layouts import sample_layout
from dalle_core.world import BACKGROUNDS, COLORS, DIRECTIONS, SHAPES, Obj, Scene, render
from dalle_core.world2 import sample2

PINNED = {
    "pair_96": "114172ef93d6eeb4acca6cc5e461bbe6810bfa8d2b3ba8fcaacc56e68ab850c1",
    "analogy_96": "85ae6534e90d965bc746a6bf5f6e2946a67693485eac25d8baeaad780782a886",
    "matrix_96": "321056f394afcc7605dc3ea30aabf8a09184256f5e4686273041ab0facaad8b2",
    "pair_64": "9b7aac34ee179b8e7e173b81b212e7de4972c3006b0449efa239bc02d279e2da",
    "analogy_64": "85716a853f4bc01f6bb5f3ccd9715b1f6d86fc0f8af2b9ad29bb72c6a8adc989",
    "matrix_60": "bb95355faf99ec04b2a53c6ceb7e187894f22c4ab2eff6b73033ac4571c72def",
    "stream2_96": "5ec5b0b0a2a2da9fe5bf2b06821d1000a5af24cddc5fc768099183c89f882415",
    "free_scenes": "932965f975814704d72b91f56213748776101be1d9640f9e61cae215c57c9c12",
}


def _digest(parts) -> str:
    """A digest of images (their bytes) and captions."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p.tobytes())
    return h.hexdigest()


def _free_scene(rng: random.Random) -> Scene:
    """Up to 9 objects anywhere, of any side, some reaching past the canvas's edge, some overlapping."""
    objs = tuple(
        Obj(
            rng.choice(SHAPES),
            rng.choice(list(COLORS)),
            "small",
            rng.uniform(-0.2, 1.2),
            rng.uniform(-0.2, 1.2),
            rng.uniform(0.005, 0.7),
            rng.choice(DIRECTIONS),
        )
        for _ in range(rng.randint(0, 9))
    )
    return Scene(rng.choice(list(BACKGROUNDS)), objs)


def render_digests() -> dict[str, str]:
    """The digests that `PINNED` holds."""
    sides = {"pair_96": 96, "analogy_96": 96, "matrix_96": 96, "pair_64": 64, "analogy_64": 64}
    digests = {
        name: _digest(
            p
            for seed in range(100)
            for s in [sample_layout(name.split("_")[0], seed, side)]
            for p in (s.image, s.caption)
        )
        for name, side in sides.items()
    }
    digests["matrix_60"] = _digest(sample_layout("matrix", seed, 60).image for seed in range(50))
    digests["stream2_96"] = _digest(
        p for seed in range(100) for s in [sample2(seed, 96)] for p in (s.image, s.caption)
    )
    rng = random.Random(0)
    digests["free_scenes"] = _digest(
        render(_free_scene(rng), side) for side in (1, 2, 5, 17, 64, 96, 101) for _ in range(30)
    )
    return digests


def test_renders_are_unchanged():
    assert render_digests() == PINNED
