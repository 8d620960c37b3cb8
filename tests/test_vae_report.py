"""`dalle eval-vae`: the tokenizer's faithfulness report per scene and per layout panel."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dalle_core.checkpoint import load_model
from dalle_core.cli import main as dalle
from dalle_core.layouts import panel_boxes
from dalle_core.settings import DEFAULT_CHECKPOINT
from dalle_core.vae import DiscreteVAE, VAEConfig
from dalle_core.vae_report import (
    KINDS,
    KindReport,
    fits,
    held_out,
    judge_pair,
    misses_figure,
    report_markdown,
    vae_report,
)


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_judged_against_itself_is_faithful_everywhere(kind: str):
    image = held_out(kind, 3, 96)
    verdicts = judge_pair(kind, image, image)
    assert verdicts and all(verdicts)
    assert (held_out(kind, 3, 96) == image).all()  # the same held-out image every time


@pytest.mark.parametrize("kind", ["pair", "analogy", "matrix"])
def test_a_blanked_panel_fails_that_panel_alone(kind: str):
    image = held_out(kind, 5, 96)
    y0, y1, x0, x1 = panel_boxes(kind, 96)[-1]
    damaged = image.copy()
    damaged[y0:y1, x0:x1] = image[y0, x0]  # the panel's corner: its background, objects erased
    verdicts = judge_pair(kind, image, damaged)
    assert verdicts[:-1] == [True] * (len(verdicts) - 1) and verdicts[-1] is False


def test_a_canvas_too_small_for_a_layout_skips_it():
    assert fits("single", 64) and fits("pair", 64) and not fits("matrix", 64)
    assert all(fits(kind, 96) for kind in KINDS)


def test_the_command_reports_the_shipped_vae(tmp_path: Path, capsys):
    dalle(["eval-vae", "--n", "4", "--out", str(tmp_path), "--threads", "1"])
    report = json.loads((tmp_path / "vae_report.json").read_text())
    kinds = [row["kind"] for row in report["kinds"]]
    assert kinds == [k for k in KINDS if fits(k, 64)]  # the shipped VAE reads 64 px images
    for row in report["kinds"]:
        assert 0 <= row["faithful"] <= 1 and row["psnr"] > 15 and row["items"] == 4
    assert 0 < report["codebook_used"] <= 1
    assert "| single | 4 |" in capsys.readouterr().out
    assert np.isclose(report["bar"], 0.99)


def test_a_search_among_four_codes_reads_more_of_the_shipped_vaes_images_right():
    """The shipped (first-edition) VAE on second-edition pairs at 64 px, where its argmax misses often enough
    to count: the search misses fewer pair halves and decodes closer to the originals."""
    vae = load_model(DEFAULT_CHECKPOINT, "vae", DiscreteVAE, VAEConfig).eval()
    (argmax,), _ = vae_report(vae, 60, kinds=("pair",), progress=None)
    vae.config = replace(vae.config, search=4)
    (searched,), _ = vae_report(vae, 60, kinds=("pair",), progress=None)
    assert searched.faithful > argmax.faithful and searched.psnr > argmax.psnr + 1


def test_the_command_measures_the_encoding_asked_for(tmp_path: Path):
    dalle(["eval-vae", "--n", "2", "--out", str(tmp_path), "--search", "3", "--threads", "1"])
    assert json.loads((tmp_path / "vae_report.json").read_text())["search"] == 3
    with pytest.raises(SystemExit, match="--search 600: the VAE has 512 codes to try"):
        dalle(["eval-vae", "--n", "1", "--out", str(tmp_path), "--search", "600"])


def test_an_untrained_vae_misses_every_image_and_the_figure_shows_the_first_of_each_kind():
    torch.manual_seed(0)
    vae = DiscreteVAE(VAEConfig(image_size=96, widths=(8, 8, 8, 8), codebook=16)).eval()
    rows, _ = vae_report(vae, n=3, kinds=("single", "pair"), batch=2, progress=None)
    assert [(r.kind, r.misses, r.faithful) for r in rows] == [
        ("single", [0, 1, 2], 0.0),
        ("pair", [0, 1, 2], 0.0),
    ]
    figure = misses_figure(vae, rows, per_kind=2)  # 2 kinds x 2 misses x (original, decoding)
    assert figure.width > 6 * 96 * 2 and figure.height > 96 * 2
    rows[0].misses, rows[1].misses = [], []
    assert misses_figure(vae, rows) is None


def test_the_table_does_not_round_a_miss_up_to_the_bar():
    """42 of 4000 panels wrong is 98.95%: the table says so (not '99.0%', beside 'not met')."""
    rows = [
        KindReport("analogy", 1000, 4000, 1 - 42 / 4000, 35.3),
        KindReport("matrix", 1000, 9000, 0.99, 33.8),
    ]
    table = report_markdown(rows, 0.36)
    assert "| analogy | 1000 | 4000 | 98.95% | 35.30 | not met |" in table
    assert "| matrix | 1000 | 9000 | 99.00% | 33.80 | met |" in table
