"""The weights shipped in assets/checkpoint: they load, fit the size budget, and a small fixed-seed
evaluation (40 prompts) stays above a floor, so a regression anywhere in the stack is caught.

The floor sits well below what the shipped model measured (see assets/MODEL_CARD.md): it catches
breakage, not noise.
"""

import numpy as np
import pytest
import torch

from dalle_core import DEFAULT_CHECKPOINT, Dalle
from dalle_core.data import ShapesWorld, validation_batch
from dalle_core.images import to_uint8
from dalle_core.judge import judge_image
from dalle_core.report import evaluate
from dalle_core.train_vae import faithfulness

CATEGORIES = [
    "single_object",
    "colors",
    "counting",
    "two_object",
    "position",
    "color_attr",
    "binding_2",
    "size",
    "background",
    "completion",
]
FLOOR = (
    0.60  # mean pass rate over the 40 prompts, best-of-4 reranked; the shipped model measured 0.90
)
DVAE_FLOOR = (
    0.90  # share of 200 held-out scenes the evaluator reads the same after a dVAE round trip
)


@pytest.fixture(scope="module")
def shipped() -> Dalle:
    torch.set_num_threads(1)
    return Dalle(DEFAULT_CHECKPOINT, device="cpu")


def test_shipped_files_fit_the_budget():
    files = sorted(DEFAULT_CHECKPOINT.iterdir())
    names = {f.name for f in files}
    for part in ("tokenizer.json", "text.json", "vae", "transformer", "clip"):
        assert part in names or {f"{part}.safetensors", f"{part}.json"} <= names, part
    assert not any(f.suffix in (".pt", ".pth", ".bin", ".pkl") for f in files), (
        "weights ship as safetensors only"
    )
    assert sum(f.stat().st_size for f in files) <= 60 * 2**20


def test_shipped_model_draws_a_red_circle(shipped):
    results = shipped.generate("a red circle", n=4, candidates=16, seed=0)
    assert any(judge_image(r.image, "a red circle")[0] for r in results)
    assert all(r.image.shape == (64, 64, 3) for r in results)


def test_small_evaluation_stays_above_the_floor(shipped):
    report = evaluate(shipped, per_category=4, candidates=4, seed=0, categories=CATEGORIES)
    mean = float(np.mean([row["best_of_4"] for row in report["results"].values()]))
    assert mean >= FLOOR, report["results"]


def test_shipped_dvae_reconstructions_read_as_the_originals(shipped):
    """The tokenizer's quality bar, on 200 of the model card's 1000 test scenes (held-out seeds 512 on)."""
    x = (
        validation_batch(ShapesWorld(shipped.image_size), 712)[0][512:].float() / 255
    )  # (200, 3, S, S)
    with torch.no_grad():
        recon = shipped.vae.decode(shipped.vae.encode(x))
    assert faithfulness(to_uint8(x), to_uint8(recon)) >= DVAE_FLOOR
