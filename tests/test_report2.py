"""`dalle eval`'s second-edition categories: their trials, the completion protocol, and a run on the shipped model."""

import json

import numpy as np
import pytest
from PIL import Image

from dalle_core.cli import main
from dalle_core.judge import judge_image
from dalle_core.report import ALL_CATEGORIES, CATEGORIES, evaluate, write_report
from dalle_core.report2 import CATEGORIES2, CHANCE, LAYOUT_OF, case, not_applicable
from dalle_core.world import HELD_OUT, parse_caption


def test_categories_and_where_they_apply():
    assert ALL_CATEGORIES == (*CATEGORIES, "completion", *CATEGORIES2)
    assert set(CATEGORIES2) == {
        "orientation",
        "translation_same",
        "translation_color",
        "translation_shape",
        "translation_size",
        "translation_mirrored",
        "translation_upside_down",
        "translation_prompt",
        "analogy",
        "matrix",
        "phrasing",
        "novel",
    }
    assert [c for c in CATEGORIES2 if not_applicable(c, 64, 8)] == [
        "matrix"
    ]  # the shipped v1 model
    assert not any(not_applicable(c, 96, 12) for c in CATEGORIES2)  # the chosen v2 geometry
    assert CHANCE == {"analogy": 1 / 80, "matrix": 1 / 80}


@pytest.mark.parametrize("category", CATEGORIES2)
def test_cases_are_fixed_by_the_seed_and_their_given_parts_are_the_answer(category):
    for i in range(8):
        c = case(category, i, 0, 96, 12)
        again = case(category, i, 0, 96, 12)
        assert (c.prompt, c.judged, c.region) == (again.prompt, again.judged, again.region)
        meaning = (
            parse_caption(c.judged) if category in ("orientation", "phrasing", "novel") else None
        )
        if category == "novel":
            assert {(g.color, g.shape) for g in meaning.groups} & HELD_OUT
        elif meaning:
            assert not {(g.color, g.shape) for g in meaning.groups} & HELD_OUT
        if category == "orientation":
            assert any(g.direction for g in meaning.groups)
        if c.given is None:
            continue
        assert np.array_equal(c.given, again.given) and c.given.shape == (96, 96, 3)
        kind = LAYOUT_OF[category]
        assert c.region == {"pair": (6, 0), "analogy": (6, 6), "matrix": (8, 8)}[kind]
        # the world's own render is the right answer; with the completed part blank it is wrong
        assert judge_image(c.given, c.judged) == (True, "ok")
        blank = c.given.copy()
        blank[c.region[0] * 8 :, c.region[1] * 8 :] = c.given[0, 0]
        assert not judge_image(blank, c.judged)[0]


def test_cases_at_the_shipped_models_size():
    c = case("analogy", 0, 0, 64, 8)
    assert (
        c.given.shape == (64, 64, 3)
        and c.region == (4, 4)
        and judge_image(c.given, c.judged) == (True, "ok")
    )
    c = case("translation_upside_down", 3, 0, 64, 8)
    assert c.region == (4, 0) and judge_image(c.given, c.judged) == (True, "ok")


def test_eval_runs_the_new_categories_on_the_shipped_model(demo_model, tmp_path):
    """The v1 model runs every new category it can (at chance, as it never saw them); matrix is not applicable."""
    cats = ["orientation", "translation_mirrored", "analogy", "matrix", "phrasing", "novel"]
    report = evaluate(demo_model, per_category=2, candidates=2, seed=0, categories=cats)
    rows = report["results"]
    assert list(rows) == cats and report["overall"]["best_of_1"] is None
    assert rows["matrix"] == {
        "best_of_1": None,
        "best_of_2": None,
        "not_applicable": "the matrix's panels do not fall on the model's 8x8 token grid",
    }
    assert rows["analogy"]["chance"] == 1 / 80 and {"analogy", "visual"} <= set(
        rows["analogy"]["unknown_words"]
    )
    assert all(
        0 <= rows[c][k] <= 1 for c in cats if c != "matrix" for k in ("best_of_1", "best_of_2")
    )
    write_report(report, tmp_path)
    text = (tmp_path / "eval.md").read_text()
    assert "| matrix | - | - | - |" in text and "not applicable" in text and "| analogy |" in text
    assert (
        json.loads((tmp_path / "eval.json").read_text())["results"]["matrix"]["best_of_1"] is None
    )
    assert Image.open(tmp_path / "categories.png").size[1] > 100


def test_cli_world_layouts_and_eval_categories(tmp_path, capsys):
    for layout in ("pair", "analogy", "matrix", "stream2"):
        main(["world", "--layout", layout, "--n", "2", "--out", str(tmp_path / f"{layout}.png")])
        assert Image.open(tmp_path / f"{layout}.png").size[0] > 96
    with pytest.raises(SystemExit, match="divisible by 3"):
        main(["world", "--layout", "matrix", "--size", "64", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="known: .*translation_mirrored.*novel"):
        main(["eval", "--categories", "colors,bogus", "--out", str(tmp_path / "eval")])


def test_an_interrupted_eval_continues_where_it_stopped(tmp_path, capsys):
    """A real `dalle eval` killed after its first categories: the rerun keeps what the killed one measured
    (eval.partial.json) and measures the rest; a rerun under other settings measures everything again."""
    import shutil
    import subprocess
    import sys
    import time

    cats = "single_object,colors,counting,two_object,position,color_attr"
    args = ["eval", "--categories", cats, "--per-category", "1", "--candidates", "2"]
    args += ["--threads", "1", "--out", str(tmp_path)]
    partial = tmp_path / "eval.partial.json"
    killed = subprocess.Popen([sys.executable, "-m", "dalle_core.cli", *args])
    while not partial.exists() and killed.poll() is None:
        time.sleep(0.05)
    killed.kill()
    assert killed.wait() != 0, "the eval finished before it could be interrupted"
    measured = json.loads(partial.read_text())["results"]
    assert measured and set(measured) < set(cats.split(","))
    shutil.copy(partial, tmp_path / "saved.json")

    main(args)
    out = capsys.readouterr().out
    assert f"continuing an interrupted evaluation; keeping {', '.join(measured)}" in out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert list(report["results"]) == cats.split(",")
    assert all(report["results"][cat] == row for cat, row in measured.items())
    assert not partial.exists(), "a finished eval leaves no partial report behind"

    shutil.copy(tmp_path / "saved.json", partial)
    main([*args, "--seed", "1"])
    assert (
        "not of this model and settings; measuring every category again" in capsys.readouterr().out
    )
    assert json.loads((tmp_path / "eval.json").read_text())["seed"] == 1
